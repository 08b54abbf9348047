"""Chat sessions and streamed replies (server-sent events)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from histora import deps
from histora.api.dependencies import ActorDep, ContainerDep, DbDep
from histora.api.schemas import ErrorResponse, RequestBody
from histora.api.sse import sse_event, sse_response
from histora.errors import InvalidInputError
from histora.models.base import Page
from histora.models.chat import ChatMessagePublic, ChatSessionPublic
from histora.models.documents import CitationPublic
from histora.services import chat as chat_service
from histora.services import conversations
from histora.services import documents as documents_service

router = APIRouter(prefix="/chat/sessions", tags=["chat"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


class SessionCreate(RequestBody):
    character_id: str = Field(min_length=1, max_length=64)


class SessionUpdate(RequestBody):
    title: str | None = Field(default=None, max_length=200)
    archived: bool | None = None


class MessageCreate(RequestBody):
    content: str = Field(min_length=1, max_length=chat_service.MAX_MESSAGE_CHARS)
    client_message_id: str | None = Field(
        default=None, max_length=chat_service.CLIENT_ID_MAX_LENGTH
    )
    stream: bool = True


class SourcesEvent(BaseModel):
    """The passages the reply may cite as [n], sent before its first delta."""

    citations: list[CitationPublic]


class TurnResult(BaseModel):
    message: ChatMessagePublic
    reply: ChatMessagePublic


@router.post("", status_code=201, response_model=ChatSessionPublic, responses=NOT_FOUND)
async def create_session(body: SessionCreate, db: DbDep, actor: ActorDep) -> ChatSessionPublic:
    return await conversations.create_session(db, actor=actor, character_id=body.character_id)


@router.get("", response_model=Page[ChatSessionPublic])
async def list_sessions(
    db: DbDep,
    actor: ActorDep,
    container: ContainerDep,
    character_id: str | None = None,
    include_archived: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Page[ChatSessionPublic]:
    if limit > container.settings.api_max_page_size:
        raise InvalidInputError(f"limit must be at most {container.settings.api_max_page_size}.")
    return await conversations.list_sessions(
        db,
        actor=actor,
        character_id=character_id,
        include_archived=include_archived,
        offset=offset,
        limit=limit,
    )


@router.get("/{session_id}", response_model=ChatSessionPublic, responses=NOT_FOUND)
async def get_session(session_id: uuid.UUID, db: DbDep, actor: ActorDep) -> ChatSessionPublic:
    return await conversations.get_session(db, actor=actor, session_id=session_id)


@router.patch("/{session_id}", response_model=ChatSessionPublic, responses=NOT_FOUND)
async def update_session(
    session_id: uuid.UUID, body: SessionUpdate, db: DbDep, actor: ActorDep
) -> ChatSessionPublic:
    if body.title is None and body.archived is None:
        raise InvalidInputError("Give a title or archived to change.")
    result = await conversations.get_session(db, actor=actor, session_id=session_id)
    if body.title is not None:
        result = await conversations.rename_session(
            db, actor=actor, session_id=session_id, title=body.title
        )
    if body.archived is not None:
        result = await conversations.set_archived(
            db, actor=actor, session_id=session_id, archived=body.archived
        )
    return result


@router.delete("/{session_id}", status_code=204, responses=NOT_FOUND)
async def delete_session(
    session_id: uuid.UUID, db: DbDep, actor: ActorDep, container: ContainerDep
) -> Response:
    await documents_service.delete_session_and_documents(
        db,
        actor=actor,
        session_id=session_id,
        files=container.file_store,
        vector_store=container.vector_store,
    )
    return Response(status_code=204)


@router.get("/{session_id}/messages", response_model=Page[ChatMessagePublic], responses=NOT_FOUND)
async def list_messages(
    session_id: uuid.UUID,
    db: DbDep,
    actor: ActorDep,
    container: ContainerDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Page[ChatMessagePublic]:
    if limit > container.settings.api_max_page_size:
        raise InvalidInputError(f"limit must be at most {container.settings.api_max_page_size}.")
    return await conversations.list_messages(
        db, actor=actor, session_id=session_id, offset=offset, limit=limit
    )


async def _sse_events(
    turn: chat_service.PreparedTurn, container: deps.Container
) -> AsyncIterator[bytes]:
    yield sse_event("message", turn.user_message)
    async for event in chat_service.stream_turn(
        container.db_session,
        turn=turn,
        chat_model=container.chat_model,
        retriever=container.retriever,
    ):
        if isinstance(event, chat_service.ReplySources):
            yield sse_event("sources", SourcesEvent(citations=event.citations))
        elif isinstance(event, chat_service.ReplyDelta):
            yield sse_event("delta", {"text": event.text})
        elif isinstance(event, chat_service.ReplyDone):
            yield sse_event("done", event.message)
        else:
            yield sse_event("error", {"code": event.code, "message": event.public_message})
            yield sse_event("done", event.message)


async def _reply(
    turn: chat_service.PreparedTurn, container: deps.Container, *, stream: bool
) -> StreamingResponse | JSONResponse:
    if stream:
        return sse_response(_sse_events(turn, container))
    async for event in chat_service.stream_turn(
        container.db_session,
        turn=turn,
        chat_model=container.chat_model,
        retriever=container.retriever,
    ):
        if isinstance(event, chat_service.ReplyFailed):
            error = {
                "code": event.code,
                "message": event.public_message,
                "details": {"reply": event.message.model_dump(mode="json")},
            }
            return JSONResponse({"error": error}, status_code=503)
        if isinstance(event, chat_service.ReplyDone):
            result = TurnResult(message=turn.user_message, reply=event.message)
            return JSONResponse(result.model_dump(mode="json"), status_code=201)
    raise AssertionError("stream_turn always ends with done or failed")


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"model": TurnResult, "description": "With stream=false: the saved reply"},
    200: {
        "description": "Server-sent events: message, sources, delta, done, error",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.post(
    "/{session_id}/messages",
    response_model=None,
    responses=STREAM_RESPONSES,
)
async def send_message(
    session_id: uuid.UUID, body: MessageCreate, db: DbDep, actor: ActorDep, container: ContainerDep
) -> StreamingResponse | JSONResponse:
    await chat_service.check_send_rate(
        container.rate_limiter, actor=actor, settings=container.settings
    )
    turn = await chat_service.start_turn(
        db,
        actor=actor,
        session_id=session_id,
        content=body.content,
        client_message_id=body.client_message_id,
    )
    return await _reply(turn, container, stream=body.stream)


@router.post(
    "/{session_id}/regenerate",
    response_model=None,
    responses=STREAM_RESPONSES,
)
async def regenerate_reply(
    session_id: uuid.UUID,
    db: DbDep,
    actor: ActorDep,
    container: ContainerDep,
    stream: bool = True,
) -> StreamingResponse | JSONResponse:
    await chat_service.check_send_rate(
        container.rate_limiter, actor=actor, settings=container.settings
    )
    turn = await chat_service.start_regenerate(db, actor=actor, session_id=session_id)
    return await _reply(turn, container, stream=stream)
