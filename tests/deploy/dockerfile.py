"""A small reader of the project's Dockerfile: its stages and what each build target runs.

Enough of the Dockerfile grammar for what the tests check (continuation lines, comments,
``FROM x AS name`` with stages built on earlier stages, ENV, USER, CMD, HEALTHCHECK); hadolint
does the general linting.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Target:
    """What a container of one build target runs, after inheriting from its parent stages."""

    name: str
    image: str  # the external base image at the root of the chain
    env: dict[str, str]
    user: str | None
    cmd: list[str] | None
    cmd_exec_form: bool
    healthcheck: list[str] | None  # None: no healthcheck (or HEALTHCHECK NONE)
    exposed: list[int]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    result: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, args = buffer.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(found))
            found.append(Stage(name=name, base=words[0]))
        elif found:
            found[-1].instructions.append(ins)
    return found


def _env(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def _json_or_shell(args: str) -> tuple[list[str], bool]:
    if args.startswith("["):
        return json.loads(args), True
    return ["/bin/sh", "-c", args], False


def target(text: str, name: str) -> Target:
    """The effective image of build target ``name`` (ENV, USER, CMD, HEALTHCHECK inherited)."""
    by_name = {s.name: s for s in stages(text)}
    chain: list[Stage] = []
    stage: Stage | None = by_name[name]
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    env: dict[str, str] = {}
    user: str | None = None
    cmd: list[str] | None = None
    exec_form = True
    health: list[str] | None = None
    exposed: list[int] = []
    for stage in chain:
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                env.update(_env(ins.args))
            elif ins.keyword == "USER":
                user = ins.args
            elif ins.keyword == "CMD":
                cmd, exec_form = _json_or_shell(ins.args)
            elif ins.keyword == "EXPOSE":
                exposed += [int(p.split("/")[0]) for p in ins.args.split()]
            elif ins.keyword == "HEALTHCHECK":
                if ins.args.upper() == "NONE":
                    health = None
                else:
                    command = re.sub(r"^(--\S+\s+)*", "", ins.args)
                    assert command.startswith("CMD "), ins
                    health, _ = _json_or_shell(command.removeprefix("CMD ").strip())
    return Target(name, chain[0].base, env, user, cmd, exec_form, health, exposed)
