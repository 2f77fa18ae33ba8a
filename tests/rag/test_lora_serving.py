"""A trained LoRA adapter served by vLLM: loaded at run time, then named as the model.

Everything talks real HTTP to ``tests.support.fake_vllm.FakeVLLM``, a local stand-in for
``vllm serve <base> --enable-lora`` with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (or without it).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from flywheel import serving
from flywheel.store import ModelRow
from rag import exceptions, factory, lora_serving
from rag.generation import CONCISE, DraftInput
from rag.models import Ticket
from tests.conftest import make_settings
from tests.support.fake_vllm import FakeVLLM

TICKET = Ticket(subject="Password reset", body="No reset email came.", external_id="T-1")
VERSION = "r3-20250106-0200"
NO_DB = "postgresql://unused/unused"


@pytest.fixture(autouse=True)
def fresh_process():
    """Each test starts as a new process would: nothing known to be loaded."""
    lora_serving.forget_all()
    yield
    lora_serving.forget_all()


def vllm_settings(tmp_path: Path, server: FakeVLLM, **overrides):
    return make_settings(
        NO_DB,
        tmp_path / "data",
        generator="openai",
        openai_base_url=server.base_url,
        openai_model=server.base_model,
        openai_timeout_s=5,
        generation_max_new_tokens=32,
        **overrides,
    )


def trained_adapter(settings, version: str = VERSION) -> Path:
    """A registry-style adapter folder: <data_dir>/models/generator/<version>."""
    folder = settings.models_dir / "generator" / version
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}', encoding="utf-8")
    return folder


def draft(drafter) -> str:
    return drafter.invoke(DraftInput(TICKET, (), CONCISE)).text


def served_models(server: FakeVLLM) -> list[str]:
    return [m["id"] for m in httpx.get(f"{server.base_url}/models").json()["data"]]


def row(version: str, status: str, path: Path) -> ModelRow:
    shown = datetime(2025, 1, 6, tzinfo=UTC)
    return ModelRow(
        1, "generator", version, str(path), status, None, None, {}, {}, None, shown, None, None
    )


def test_a_loaded_adapter_drafts_under_its_own_name(tmp_path):
    with FakeVLLM("base-llm") as server:
        settings = vllm_settings(tmp_path, server)
        adapter = trained_adapter(settings)

        drafter = factory.llm_drafter(settings, adapter, label=VERSION)
        tuned = drafter.invoke(DraftInput(TICKET, (), CONCISE))
        base = draft(factory.llm_drafter(settings))
        models = served_models(server)

    assert server.posts("/v1/load_lora_adapter") == [
        {"lora_name": VERSION, "lora_path": str(adapter.resolve())}
    ]
    assert tuned.text == f"drafted by {VERSION}"
    assert tuned.producer["model"] == VERSION
    assert server.posts("/v1/chat/completions")[0]["model"] == VERSION
    assert base == "drafted by base-llm"
    assert models == ["base-llm", VERSION]


def test_an_adapter_is_posted_once_per_process_and_already_loaded_counts_as_loaded(tmp_path):
    with FakeVLLM() as server:
        settings = vllm_settings(tmp_path, server)
        adapter = trained_adapter(settings)
        for _ in range(3):  # the live pipeline rebuilt three times
            factory.llm_drafter(settings, adapter, label=VERSION)
        assert len(server.posts("/v1/load_lora_adapter")) == 1

        lora_serving.forget_all()  # another worker process: vLLM answers 400 "already loaded"
        drafter = factory.llm_drafter(settings, adapter, label=VERSION)
        assert draft(drafter) == f"drafted by {VERSION}"
    assert len(server.posts("/v1/load_lora_adapter")) == 2


@pytest.mark.parametrize("flat_errors", [False, True], ids=["error-object", "flat-error"])
def test_a_refused_adapter_raises_generator_unavailable_with_the_servers_reason(
    tmp_path, flat_errors
):
    with FakeVLLM(flat_errors=flat_errors) as server:
        settings = vllm_settings(tmp_path, server)
        missing = settings.models_dir / "generator" / "r4-gone"  # no adapter_config.json there
        with pytest.raises(exceptions.GeneratorUnavailable) as caught:
            factory.llm_drafter(settings, missing, label="r4-gone")
    message = str(caught.value)
    assert "'r4-gone'" in message
    assert f"{server.base_url}/load_lora_adapter" in message
    assert "400" in message and "No adapter found" in message
    assert "--enable-lora" in message and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message


def test_without_runtime_updating_the_refusal_says_what_vllm_needs_and_is_not_cached(tmp_path):
    with FakeVLLM(runtime_updates=False) as server:
        settings = vllm_settings(tmp_path, server)
        adapter = trained_adapter(settings)
        with pytest.raises(exceptions.GeneratorUnavailable) as caught:
            factory.llm_drafter(settings, adapter, label=VERSION)
        assert "404" in str(caught.value) and "Not Found" in str(caught.value)
        assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in str(caught.value)

        server.runtime_updates = True  # the operator restarts vLLM with the flag
        assert draft(factory.llm_drafter(settings, adapter, label=VERSION)) == (
            f"drafted by {VERSION}"
        )


def test_an_unreachable_server_raises_generator_unavailable(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(
        NO_DB,
        tmp_path / "data",
        generator="openai",
        openai_base_url=f"http://127.0.0.1:{port}/v1/",
        openai_timeout_s=2,
    )
    adapter = trained_adapter(settings)
    with pytest.raises(exceptions.GeneratorUnavailable) as caught:
        factory.llm_drafter(settings, adapter, label=VERSION)
    assert f"http://127.0.0.1:{port}/v1/load_lora_adapter" in str(caught.value)
    assert VERSION in str(caught.value)


def test_openai_lora_root_reroots_the_adapter_path_to_where_vllm_sees_it(tmp_path):
    remote = Path("/mnt/aitl-models")
    with FakeVLLM() as server:
        settings = vllm_settings(tmp_path, server, openai_lora_root=remote)
        server.mounts = {str(remote): settings.models_dir}  # the volume vLLM runs with
        adapter = trained_adapter(settings)
        text = draft(factory.llm_drafter(settings, adapter, label=VERSION))

        elsewhere = tmp_path / "elsewhere" / "r9"
        elsewhere.mkdir(parents=True)
        with pytest.raises(exceptions.GeneratorMisconfigured, match="not under"):
            factory.llm_drafter(settings, elsewhere, label="r9")

    assert server.posts("/v1/load_lora_adapter") == [
        {"lora_name": VERSION, "lora_path": f"/mnt/aitl-models/generator/{VERSION}"}
    ]
    assert text == f"drafted by {VERSION}"


def test_unload_stops_serving_and_a_later_load_posts_again(tmp_path):
    with FakeVLLM() as server:
        settings = vllm_settings(tmp_path, server)
        adapter = trained_adapter(settings)
        adapters = factory.runtime_adapters(settings)
        adapters.ensure_loaded(VERSION, adapter)
        adapters.unload(VERSION)
        assert served_models(server) == ["base-llm"]
        adapters.unload(VERSION)  # not held by the server: already unloaded
        adapters.ensure_loaded(VERSION, adapter)
        assert served_models(server) == ["base-llm", VERSION]
    assert len(server.posts("/v1/load_lora_adapter")) == 2
    assert server.posts("/v1/unload_lora_adapter") == [{"lora_name": VERSION}] * 2


def test_serving_drafts_the_challenger_adapter_through_vllm(tmp_path):
    with FakeVLLM() as server:
        settings = vllm_settings(tmp_path, server)
        rows = [row(VERSION, "challenger", trained_adapter(settings))]
        champion, challenger = serving.drafters(serving.served(settings, rows))
        assert champion is None  # AITL_OPENAI_MODEL, the base, stays the champion
        assert draft(challenger) == f"drafted by {VERSION}"


def test_serving_leaves_a_refused_adapter_out_and_raises_nothing(tmp_path, caplog):
    with FakeVLLM(runtime_updates=False) as server:
        settings = vllm_settings(tmp_path, server)
        challenger_row = row(VERSION, "challenger", trained_adapter(settings))
        champion_row = row("r2-20241230-0200", "champion", trained_adapter(settings, "r2"))
        champion, challenger = serving.drafters(serving.served(settings, [challenger_row]))
        assert (champion, challenger) == (None, None)

        both = serving.served(settings, [champion_row, challenger_row])
        assert serving.drafters(both) == (None, None)  # the pipeline falls back to the base
        assert server.posts("/v1/chat/completions") == []
    assert "no challenger draft" in caplog.text
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in caplog.text
