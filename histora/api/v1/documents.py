"""Source documents: upload to a character (admins) or a conversation (its owner), manage."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Response, UploadFile

from histora.api.dependencies import ActorDep, ContainerDep, DbDep
from histora.api.schemas import ErrorResponse
from histora.errors import FileTooLargeError
from histora.models.documents import DocumentPublic
from histora.services import documents as documents_service

router = APIRouter(tags=["documents"])
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (403, 404, 409, 413, 415, 422)
}
FileField = Annotated[UploadFile, File(description="A PDF, DOCX, TXT or Markdown file.")]


async def _read_upload(file: UploadFile, container: ContainerDep) -> documents_service.Upload:
    limit = container.settings.upload_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(f"Files are limited to {limit / (1024 * 1024):.0f} MB.")
    return documents_service.Upload(filename=file.filename or "", data=data)


@router.post(
    "/characters/{character_id}/documents",
    status_code=201,
    response_model=DocumentPublic,
    responses=ERRORS,
)
async def upload_character_document(
    character_id: str, file: FileField, db: DbDep, actor: ActorDep, container: ContainerDep
) -> DocumentPublic:
    document = await documents_service.upload_to_character(
        db,
        actor=actor,
        character_id=character_id,
        upload=await _read_upload(file, container),
        files=container.file_store,
        limits=container.extraction_limits,
    )
    container.ingestion_worker.notify()
    return document


@router.get(
    "/characters/{character_id}/documents", response_model=list[DocumentPublic], responses=ERRORS
)
async def list_character_documents(
    character_id: str, db: DbDep, actor: ActorDep
) -> list[DocumentPublic]:
    return await documents_service.list_for_character(db, actor=actor, character_id=character_id)


@router.post(
    "/chat/sessions/{session_id}/documents",
    status_code=201,
    response_model=DocumentPublic,
    responses=ERRORS,
)
async def upload_session_document(
    session_id: uuid.UUID, file: FileField, db: DbDep, actor: ActorDep, container: ContainerDep
) -> DocumentPublic:
    document = await documents_service.upload_to_session(
        db,
        actor=actor,
        session_id=session_id,
        upload=await _read_upload(file, container),
        files=container.file_store,
        limits=container.extraction_limits,
    )
    container.ingestion_worker.notify()
    return document


@router.get(
    "/chat/sessions/{session_id}/documents", response_model=list[DocumentPublic], responses=ERRORS
)
async def list_session_documents(
    session_id: uuid.UUID, db: DbDep, actor: ActorDep
) -> list[DocumentPublic]:
    return await documents_service.list_for_session(db, actor=actor, session_id=session_id)


@router.get("/documents/{document_id}", response_model=DocumentPublic, responses=ERRORS)
async def get_document(document_id: uuid.UUID, db: DbDep, actor: ActorDep) -> DocumentPublic:
    return await documents_service.get_document(db, actor=actor, document_id=document_id)


@router.delete("/documents/{document_id}", status_code=204, responses=ERRORS)
async def delete_document(
    document_id: uuid.UUID, db: DbDep, actor: ActorDep, container: ContainerDep
) -> Response:
    await documents_service.delete_document(
        db,
        actor=actor,
        document_id=document_id,
        files=container.file_store,
        vector_store=container.vector_store,
    )
    return Response(status_code=204)


@router.post(
    "/documents/{document_id}/reindex",
    status_code=202,
    response_model=DocumentPublic,
    responses=ERRORS,
)
async def reindex_document(
    document_id: uuid.UUID, db: DbDep, actor: ActorDep, container: ContainerDep
) -> DocumentPublic:
    document = await documents_service.reindex_document(
        db, actor=actor, document_id=document_id, vector_store=container.vector_store
    )
    container.ingestion_worker.notify()
    return document
