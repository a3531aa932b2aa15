"""``cpv setup``: storage and hosting configured by answering questions.

The questions come from plugins (hook ``cpv_setup_choices``): each
:class:`~cpv_core.plugin.protocols.SetupChoice` is one answer to "which storage?" or
"which hosting?" and brings its own questions, checks and the code that writes
the configuration (the same validated code as ``cpv aws-config`` /
``cpv bitbucket-config``). This module only runs the conversation:

1. every answer is collected and checked first (a wrong answer is said and the
   question asked again; without a terminal it is an error naming the flag);
2. then the configuration is written in one step: an error or Ctrl-C while
   writing puts ``config.json`` back as it was, and Ctrl-C at a question
   never reaches the writing at all;
3. then the credentials are checked, as ``cpv validate`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cpv_core.errors import CPVError, ValidationError
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.manager import Plugins
from cpv_core.plugin.protocols import SetupChoice, SetupQuestion, ValidationReport

#: the kinds ``cpv setup`` asks about, in order, with what each decides
KINDS = ("storage", "hosting")
KIND_HELP = {
    "storage": "where the checkpoints' bytes go",
    "hosting": "where each model's git repository (pointers, metrics, versions) lives",
}

NEXT_STEPS = (
    "cpv init model -t TEAM -m MODEL          # a model's workspace and its remote",
    "cpv model upload PATH --metrics '{\"loss\": 0.3}'   # store a checkpoint",
    "cpv model tag                            # give it a version (v0.1)",
)


class Conversation(Protocol):
    """How the wizard talks to a person (the CLI: click prompts on a terminal)."""

    def say(self, line: str) -> None:
        """Show one line."""

    def ask(self, prompt: str, default: str | None) -> str:
        """One answer; ``default`` is shown and taken on Enter (None: an answer is required)."""

    def pause(self, text: str) -> None:
        """Wait until the person has done ``text`` (Enter)."""


def flag_name(choice: SetupChoice, question: SetupQuestion) -> str:
    """The option that answers ``question`` without asking: ``s3_bucket`` (``--s3-bucket``)."""
    return f"{choice.name}_{question.name}".replace("-", "_")


def choices_by_kind(plugins: Plugins | None = None) -> dict[str, list[SetupChoice]]:
    """The choices plugins offer per kind, the embedded ``local`` first."""
    out: dict[str, list[SetupChoice]] = {kind: [] for kind in KINDS}
    for choice in (plugins or Plugins()).setup_choices():
        if choice.kind in out:
            out[choice.kind].append(choice)
    for kind in KINDS:
        out[kind].sort(key=lambda c: (c.name != "local", c.name))
    return out


@dataclass
class SetupPlan:
    """What the conversation decided: per kind, a choice and its checked answers."""

    picked: dict[str, SetupChoice] = field(default_factory=dict)
    answers: dict[str, dict[str, str]] = field(default_factory=dict)


def current_choice(config: CPVConfig, options: Sequence[SetupChoice], kind: str) -> str:
    """The choice matching the backend in force for ``kind`` (the default answer)."""
    backend = config.backend_name(kind)
    return next((c.name for c in options if c.backend == backend), options[0].name)


def resolve_default(question: SetupQuestion, answers: Mapping[str, str], current: Mapping[str, str]) -> str | None:
    """What Enter means: the present configuration's value, else the question's default."""
    if question.name in current:
        return current[question.name]
    if callable(question.default):
        return question.default(answers) or None
    return question.default


def collect(
    config: CPVConfig,
    given: Mapping[str, str | None],
    talk: Conversation | None,
    plugins: Plugins | None = None,
) -> SetupPlan:
    """Decide every answer: from ``given`` (the flags), else by asking ``talk``
    (None: take the defaults and fail on a missing or wrong answer)."""
    plan = SetupPlan()
    for kind, options in choices_by_kind(plugins).items():
        if not options:
            continue
        choice = pick_choice(config, kind, options, given.get(kind), talk)
        current = dict(choice.current(config)) if choice.current else {}
        answers: dict[str, str] = {}
        for question in choice.questions:
            answers[question.name] = answer(question, flag_name(choice, question), given, talk, answers, current)
        plan.picked[kind], plan.answers[kind] = choice, answers
    return plan


def pick_choice(config: CPVConfig, kind: str, options: Sequence[SetupChoice], given: str | None, talk: Conversation | None) -> SetupChoice:
    """The choice for ``kind``: the flag's, else asked (default: the one in force)."""
    names = [c.name for c in options]
    if given is None:
        default = current_choice(config, options, kind)
        if talk is None:
            given = default
        else:
            talk.say(f"{kind.capitalize()}: {KIND_HELP[kind]}")
            for c in options:
                talk.say(f"  {c.name:10} {c.label}")
            given = ask_until_valid(
                talk, f"{kind.capitalize()} ({'/'.join(names)})", default, lambda v, _: check_choice(kind, v, names), {}
            )
    picked = check_choice(kind, given, names)
    return next(c for c in options if c.name == picked)


def answer(
    question: SetupQuestion,
    name: str,
    given: Mapping[str, str | None],
    talk: Conversation | None,
    answers: Mapping[str, str],
    current: Mapping[str, str],
) -> str:
    """One checked answer: the flag ``name``'s value, else asked, else (no terminal) the default."""
    flag = f"--{name.replace('_', '-')}"
    default = resolve_default(question, answers, current)
    value = given.get(name)
    if value is not None:
        return check_answer(question, value, answers, flag)
    if talk is not None:
        if question.help:
            talk.say(f"  ({question.help})")
        return ask_until_valid(talk, question.prompt, default, question.check, answers)
    if default is None:
        raise ValidationError(f"{question.prompt} has no default and no answer", fix=f"pass {flag} VALUE, or run `cpv setup` on a terminal")
    return check_answer(question, default, answers, flag)


def check_choice(kind: str, value: str, names: Sequence[str]) -> str:
    """``value`` if it names one of the choices for ``kind``."""
    value = value.strip().lower()
    if value not in names:
        raise ValidationError(f"{kind} {value!r} is not one of the choices", fix=f"answer one of: {', '.join(names)}")
    return value


def check_answer(question: SetupQuestion, value: str, answers: Mapping[str, str], flag: str) -> str:
    """The checked answer; a wrong one is an error naming the flag that gave it."""
    value = value.strip()
    if question.check is None:
        return value
    try:
        return question.check(value, answers)
    except CPVError as exc:
        raise type(exc)(f"{flag}: {exc.message}", fix=exc.fix) from None


def ask_until_valid(
    talk: Conversation,
    prompt: str,
    default: str | None,
    check: Callable[[str, Mapping[str, str]], str] | None,
    answers: Mapping[str, str],
) -> str:
    """Ask until the answer passes ``check``, saying each time what was wrong."""
    while True:
        value = talk.ask(prompt, default).strip()
        if not value and default is None:
            talk.say("  an answer is needed here")
            continue
        try:
            return check(value, answers) if check else value
        except CPVError as exc:
            talk.say(f"  {exc.message}" + (f" ({exc.fix})" if exc.fix else ""))


def describe(plan: SetupPlan) -> list[str]:
    """The plan in a few lines, before anything is written."""
    lines = []
    for kind, choice in plan.picked.items():
        shown = ", ".join(f"{k} {v}" for k, v in plan.answers[kind].items() if v) or "no settings"
        lines.append(f"{kind}: {choice.name} ({shown})")
    return lines


def apply(config: CPVConfig, plan: SetupPlan, plugins: Plugins | None = None) -> list[str]:
    """Write the whole plan, or nothing: any error (or Ctrl-C) puts ``config.json`` back.

    For each kind, the sections of other credential providers that select a
    backend of that kind are removed and an explicit backend key is cleared,
    so the chosen backend is the one in force (set explicitly only when the
    providers would not select it)."""
    plugins = plugins or Plugins()
    providers = plugins.credential_providers()
    said: list[str] = []
    with config.all_or_nothing():
        for kind, choice in plan.picked.items():
            for info in providers:
                if kind in info.selects and info.name != choice.provider and info.provider.is_configured(config):
                    config.set_config(info.section or info.name, None)
                    said.append(f"{kind}: the {info.name} settings were removed ({choice.name} replaces them)")
            config.set_config(kind, None)
            if choice.apply is not None:
                said.extend(choice.apply(config, plan.answers[kind]))
            if config.backend_name(kind) != choice.backend:
                config.set_config(kind, choice.backend)
    return said


def validate(config: CPVConfig) -> ValidationReport:
    """The checks ``cpv validate`` runs, on the configuration just written."""
    return config.validate_credentials()
