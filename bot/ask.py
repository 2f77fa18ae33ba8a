"""``/aitl ask <question>``: ad-hoc drafts for any question, shown only to the asker."""

from __future__ import annotations

from slack_bolt import App

from bot import jobs, payloads
from bot.cards import new_ask_id
from bot.guards import agents_only
from bot.services import BotServices

COMMAND = "/aitl"
MAX_QUESTION = 2000
HELP = (
    "*AITL*\n• `/aitl ask <question>`: two draft replies with their sources, just for you.\n"
    "• Open the AITL app's *Home* tab for your figures (and, for admins, the set-up)."
)


def register(app: App, services: BotServices) -> None:
    app.command(COMMAND, middleware=[agents_only(services)])(on_command(services))


def on_command(services: BotServices):
    def listener(ack, command: dict) -> None:
        verb, _, question = (command.get("text") or "").strip().partition(" ")
        question = question.strip()
        if verb.lower() != "ask":
            ack(response_type="ephemeral", text=HELP)
            return
        if not question:
            ack(response_type="ephemeral", text="Ask something: `/aitl ask <question>`.")
            return
        if len(question) > MAX_QUESTION:
            ack(response_type="ephemeral", text=f"Keep it under {MAX_QUESTION} characters.")
            return
        user = command["user_id"]
        services.once(
            payloads.request_key(command),  # a retried command queues no second answer
            "ask",
            user,
            lambda conn: jobs.defer_ask(
                services.queue,
                conn,
                user_id=user,
                channel_id=command.get("channel_id") or "",
                question=question,
                response_url=command.get("response_url") or "",
                ask_id=new_ask_id(),
            ),
        )
        ack(response_type="ephemeral", text="Drafting two replies for you…")

    return listener
