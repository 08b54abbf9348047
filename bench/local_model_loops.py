"""How often the embedded local model loops, under different repetition settings.

The small local model (SmolLM2-135M) tends to repeat itself in long replies: the same
sentence over and over, or its own instructions read back. This bench asks the real
llama-server the catalogue's own starter questions, through the app's prompt and model
client, once per sampling setting and seed, and prints how much of each reply repeats
what came before, against the first setting (the baseline) measured in the same run.

    python bench/local_model_loops.py [--characters 8] [--seeds 2]
        [--setting NAME=key:value,key:value ...]

A setting's keys are ModelSpec's ``frequency_penalty`` and ``presence_penalty``, or any
llama-server sampling option (``repeat_penalty``, ``dry_multiplier``, ...). The
defaults compare no penalty with the app's local model setting and a few others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# ruff: noqa: E402 - the imports below need ROOT on sys.path
from histora.providers.chat_types import ModelSpec, PromptMessage, StreamDelta, StreamEnd
from histora.providers.local_model import LocalModelServer, local_chat_model, local_model_spec
from histora.services import prompting
from histora.settings import Settings

SEED_FILE = ROOT / "histora" / "seed" / "characters.json"
BASELINE = "none=repeat_penalty:1.0"
DEFAULT_SETTINGS = (
    BASELINE,
    "app=",  # the app's own local model spec, whatever it is
    "repeat 1.1=repeat_penalty:1.1",
    "dry 0.8=dry_multiplier:0.8",
)
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class ReplyFigures:
    words: int
    repeated_4gram_share: float  # of the reply's 4-grams, the share seen earlier in it
    looped: bool  # some 8 words in a row occur twice
    prompt_echo_share: float  # of the reply's 6-grams, the share copied from the prompt
    cut_off: bool  # stopped by max_tokens rather than by the model


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def measure(reply: str, *, prompt: str, cut_off: bool) -> ReplyFigures:
    tokens = words(reply)
    fours = ngrams(tokens, 4)
    seen: set[tuple[str, ...]] = set()
    repeated = 0
    for gram in fours:
        repeated += gram in seen
        seen.add(gram)
    eights = ngrams(tokens, 8)
    sixes = ngrams(tokens, 6)
    prompt_sixes = set(ngrams(words(prompt), 6))
    return ReplyFigures(
        words=len(tokens),
        repeated_4gram_share=repeated / len(fours) if fours else 0.0,
        looped=len(set(eights)) < len(eights),
        prompt_echo_share=(
            sum(gram in prompt_sixes for gram in sixes) / len(sixes) if sixes else 0.0
        ),
        cut_off=cut_off,
    )


def parse_setting(text: str, base: ModelSpec) -> tuple[str, ModelSpec]:
    """``NAME=key:value,...`` over the app's local spec with its penalties cleared;
    ``NAME=`` alone is the app's spec as it is."""
    name, _, body = text.partition("=")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"a setting needs a name: {text!r}")
    if not body.strip():
        return name.strip(), base
    spec = replace(base, frequency_penalty=None, presence_penalty=None, extra_sampling=())
    extra: list[tuple[str, float]] = []
    for part in body.split(","):
        key, _, value = part.partition(":")
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number in {part!r}") from None
        if key == "frequency_penalty":
            spec = replace(spec, frequency_penalty=number)
        elif key == "presence_penalty":
            spec = replace(spec, presence_penalty=number)
        else:
            extra.append((key.strip(), number))
    return name.strip(), replace(spec, extra_sampling=tuple(extra))


def prompts(characters: int) -> list[tuple[str, str]]:
    """(system prompt, question) for the first starter questions of each character."""
    pairs: list[tuple[str, str]] = []
    for row in json.loads(SEED_FILE.read_text())[:characters]:
        voice = prompting.CharacterVoice(
            name=row["name"],
            system_prompt=row["system_prompt"],
            speaking_style=row["speaking_style"],
            knowledge_horizon_year=row["knowledge_horizon_year"],
            era=row["era"],
        )
        system = prompting.system_prompt(voice)
        pairs.extend((system, question) for question in row["starter_questions"][:3])
    return pairs


async def one_reply(
    server: LocalModelServer, spec: ModelSpec, system: str, question: str
) -> tuple[str, bool]:
    model = local_chat_model(server, [spec], timeout_seconds=spec.total_timeout_seconds)
    messages = [
        PromptMessage(role="system", content=system),
        PromptMessage(role="user", content=question),
    ]
    text: list[str] = []
    cut_off = False
    async for event in model.stream(messages):
        if isinstance(event, StreamDelta):
            text.append(event.text)
        elif isinstance(event, StreamEnd):
            cut_off = event.finish_reason == "length"
    return "".join(text), cut_off


async def run_setting(
    server: LocalModelServer,
    spec: ModelSpec,
    pairs: list[tuple[str, str]],
    seeds: int,
) -> tuple[list[ReplyFigures], str, float]:
    """Every prompt under every seed, two at a time (llama-server has two slots)."""
    jobs = [(system, question, seed) for seed in range(1, seeds + 1) for system, question in pairs]
    limit = asyncio.Semaphore(2)
    sample = ""

    async def run(system: str, question: str, seed: int) -> ReplyFigures:
        nonlocal sample
        seeded = replace(spec, extra_sampling=(*spec.extra_sampling, ("seed", seed)))
        async with limit:
            reply, cut_off = await one_reply(server, seeded, system, question)
        if (system, question, seed) == jobs[0]:
            sample = reply
        return measure(reply, prompt=system, cut_off=cut_off)

    started = time.perf_counter()
    figures = await asyncio.gather(*(run(*job) for job in jobs))
    return list(figures), sample, time.perf_counter() - started


def row(name: str, figures: list[ReplyFigures], baseline: list[ReplyFigures]) -> str:
    def share(values: list[bool]) -> float:
        return 100 * sum(values) / len(values)

    looped = share([f.looped for f in figures])
    base_looped = share([f.looped for f in baseline])
    repeated = 100 * statistics.mean(f.repeated_4gram_share for f in figures)
    base_repeated = 100 * statistics.mean(f.repeated_4gram_share for f in baseline)
    ratio = f"{repeated / base_repeated:.2f}x" if base_repeated else "-"
    return (
        f"{name:<16} {looped:6.0f}% {'(' + f'{base_looped:.0f}%' + ')':>7} "
        f"{repeated:9.1f}% {ratio:>7} "
        f"{100 * statistics.mean(f.prompt_echo_share for f in figures):9.1f}% "
        f"{share([f.cut_off for f in figures]):7.0f}% "
        f"{statistics.median(f.words for f in figures):7.0f}"
    )


async def run(options: argparse.Namespace, settings_list: list[tuple[str, ModelSpec]]) -> int:
    pairs = prompts(options.characters)
    with tempfile.TemporaryDirectory(prefix="histora-loops-") as data_dir:
        settings = Settings(_env_file=None, data_dir=Path(data_dir), local_model_port=options.port)
        server = LocalModelServer(settings)
        problem = server.installation_problem()
        if problem:
            sys.exit(problem)
        print(
            f"{len(pairs)} prompts ({options.characters} characters x 3 starter questions) "
            f"x {options.seeds} seeds per setting; temperature {settings_list[0][1].temperature}, "
            f"max_tokens {settings_list[0][1].max_tokens}",
            flush=True,
        )
        results: list[tuple[str, ModelSpec, list[ReplyFigures], str]] = []
        print(
            f"\n{'setting':<16} {'looped':>7} {'(base)':>7} {'repeated':>10} {'ratio':>7} "
            f"{'echo':>10} {'cut off':>8} {'words':>7} {'seconds':>8}",
            flush=True,
        )
        async with server.run():
            for name, spec in settings_list:
                figures, sample, seconds = await run_setting(server, spec, pairs, options.seeds)
                results.append((name, spec, figures, sample))
                # Row by row, so a long run that is stopped still shows what it measured.
                print(f"{row(name, figures, results[0][2])} {seconds:8.0f}", flush=True)
    print(
        "\nlooped: replies in which some 8 words in a row occur twice. repeated: the share "
        "of a reply's 4-word runs already seen earlier in it (mean), and its ratio to the "
        f"first setting ({results[0][0]}). echo: the share of 6-word runs copied from the "
        "system prompt. cut off: replies stopped by max_tokens. words: median length."
    )
    if options.samples:
        for name, spec, _, sample in results:
            print(f"\n--- {name} {dict(spec.sampling())} ---\n{sample.strip()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--characters", type=int, default=8, help="characters from the seed")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per prompt")
    parser.add_argument("--port", type=int, default=8795, help="llama-server's port")
    parser.add_argument(
        "--setting",
        action="append",
        help=f"NAME=key:value,... (repeatable; the first is the baseline). "
        f"Default: {' '.join(repr(s) for s in DEFAULT_SETTINGS)}",
    )
    parser.add_argument("--samples", action="store_true", help="print each setting's first reply")
    options = parser.parse_args(argv)
    options.setting = options.setting or list(DEFAULT_SETTINGS)
    if options.characters < 1 or options.seeds < 1:
        parser.error("--characters and --seeds must be 1 or more")
    base = local_model_spec(Settings(_env_file=None))
    try:
        settings_list = [parse_setting(text, base) for text in options.setting]
    except (argparse.ArgumentTypeError, ValueError) as exc:  # a clash with the request's fields
        parser.error(f"--setting: {exc}")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(options, settings_list))
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
