"""The encoders benchmark's report: the default backend's goals (within 0.005 of torch float32
on each retrieval metric, vectors at cosine ≥ 0.999), the tables' rows, and the measuring
helpers it is built on (cosines, the reranked order, score agreement, gold chunks)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import encoders as bench
from benchmarks import flywheel as flywheel_bench

NAMES = bench.goal_metrics(20, 5)
TORCH = dict(zip(NAMES, (0.80, 0.30, 0.60, 0.65), strict=True))


def prepared(backend: str, seconds: float = 1.0) -> bench.Prepared:
    return bench.Prepared(seconds=seconds, load_seconds=0.1, backend=backend)


def row(name: str, backend: str, retrieval: dict[str, float], **kw) -> bench.EmbedderRow:
    found = bench.EmbedderRow(name, prepared(backend), retrieval={"entity": retrieval}, **kw)
    found.judged = {"entity": 10}
    return found


def shifted(**deltas: float) -> dict[str, float]:
    return {m: TORCH[m] + deltas.get(m.split("@")[0], 0.0) for m in NAMES}


def cells(table, column: int) -> list[str]:
    return [str(cell) for cell in table.columns[column].cells]


def test_the_default_backend_passes_within_the_margin_and_misses_beyond_it():
    assert bench.DEFAULT == "auto"
    near = [row("torch", "torch", TORCH), row("auto", "openvino", shifted(recall=-0.005))]
    found = bench.goals(near, [], ["entity"], NAMES)["retrieval_entity"]
    assert found["pass"] is True and found["backend"] == "openvino"
    assert found["measured"]["recall@20"] == pytest.approx(-0.005)

    far = [row("torch", "torch", TORCH), row("auto", "openvino", shifted(mrr=+0.0061))]
    missed = bench.goals(far, [], ["entity"], NAMES)["retrieval_entity"]
    assert missed["pass"] is False, "a gain beyond the margin is not 'within' either"
    assert missed["measured"]["mrr@10"] == pytest.approx(0.0061)


def test_another_backend_far_off_does_not_decide_the_default_goal_but_shows_in_its_row():
    rows = [
        row("torch", "torch", TORCH),
        row("onnx", "onnx", shifted(precision=-0.02)),
        row("auto", "openvino", TORCH),
    ]
    assert bench.goals(rows, [], ["entity"], NAMES)["retrieval_entity"]["pass"] is True
    table = bench.metrics_table("t", rows, lambda r: r.retrieval.get("entity", {}), NAMES)
    assert cells(table, 0) == ["torch", "onnx", "auto → openvino"]
    assert cells(table, 2)[1] == "0.2800 (-0.0200)"
    assert cells(table, 1)[0] == "0.8000", "the reference shows no difference to itself"
    verdicts = cells(table, len(NAMES) + 1)
    assert verdicts[0] == "reference" and "MISS" in verdicts[1] and "PASS" in verdicts[2]


def test_without_the_default_row_or_torch_the_goal_has_no_verdict():
    alone = [row("torch", "torch", TORCH), row("onnx", "onnx", TORCH)]
    assert bench.goals(alone, [], ["entity"], NAMES)["retrieval_entity"]["pass"] is None
    broken = [
        bench.EmbedderRow("torch", prepared("torch"), error="failed"),
        row("auto", "openvino", TORCH),
    ]
    goal = bench.goals(broken, [], ["entity"], NAMES)["retrieval_entity"]
    assert goal["pass"] is None and goal["measured"] is None
    assert "n/a" in cells(bench.goals_table({"retrieval_entity": goal}), 3)[0]


def test_the_vectors_goal_reads_the_lowest_cosine_of_every_text_set():
    ok = bench.Cosine(100, 0.99999, 0.9995)
    low = bench.Cosine(50, 0.99990, 0.9987)
    rows = [
        row("torch", "torch", TORCH),
        row("auto", "openvino", TORCH, cosine={"long": ok, "corpus:entity": low}),
    ]
    goal = bench.goals(rows, [], ["entity"], NAMES)["default_vectors_agree"]
    assert goal["measured"] == 0.9987 and goal["pass"] is False
    rows[1].cosine["corpus:entity"] = ok
    assert bench.goals(rows, [], ["entity"], NAMES)["default_vectors_agree"]["pass"] is True


def test_the_reranked_goal_reads_the_reranker_rows():
    rerankers = [
        bench.RerankerRow("torch", prepared("torch"), retrieval=TORCH),
        bench.RerankerRow("auto", prepared("torch-bf16"), retrieval=shifted(ndcg=0.01)),
    ]
    found = bench.goals([], rerankers, [], NAMES)
    assert found["reranked"]["pass"] is False and found["reranked"]["backend"] == "torch-bf16"
    assert set(found) == {"default_vectors_agree", "reranked"}


def test_the_speed_table_shows_rates_against_torch_and_a_failed_backend_says_why():
    def speed(rate: float) -> dict[str, bench.Speed]:
        return {"long": bench.Speed(64, 160.0, [rate]), "short": bench.Speed(64, 25.0, [rate * 6])}

    cos = bench.Cosine(64, 0.999991, 0.99995)
    rows = [
        row("torch", "torch", TORCH, speed=speed(40.0), latency=bench.Latency(20, 9.0, 12.0, 9.5)),
        row("openvino", "openvino", TORCH, speed=speed(120.0), cosine={"long": cos}),
        bench.EmbedderRow("onnx", prepared("torch"), error="onnx did not run; torch instead"),
    ]
    rows[1].prepared.seconds, rows[1].prepared.export_s = 12.5, 5.5
    table = bench.speed_table(rows)
    assert cells(table, 1)[:2] == ["1.0", "12.5 (5.5)"], "prepare's seconds, the export's part"
    assert cells(table, 2)[:2] == ["40.0", "120.0 (3.0×)"]
    assert cells(table, 3)[:2] == ["240.0", "720.0 (3.0×)"]
    assert cells(table, 4)[0] == "9.0 / 12.0 ms"
    assert cells(table, 5)[1] == "0.99999 / 0.99995"
    assert cells(table, 2)[2] == "onnx did not run; torch instead"


def test_a_named_backend_that_fell_back_is_not_measured_but_auto_picking_torch_is():
    assert bench.fell_back("onnx", prepared("torch")) is not None
    assert bench.fell_back("onnx", prepared("onnx")) is None
    assert bench.fell_back("auto", prepared("torch")) is None


def test_cosines_search_and_the_blended_rerank_follow_the_product():
    a = np.eye(3, dtype=np.float32)
    b = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0, 1]], dtype=np.float32)
    found = bench.cosine(a, b)
    assert (found.texts, found.min) == (3, pytest.approx(0.6))
    assert found.mean == pytest.approx((1 + 0.6 + 1) / 3)

    hits = bench.search(np.array([[0.0, 0.0, 1.0]]), b, [7, 8, 9], k=2)
    assert hits[0] == [(9, pytest.approx(1.0)), (8, pytest.approx(0.8))]

    ranked = [[(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.1)]]
    # the cross-encoder alone (weight 0) orders the head; the tail keeps its place
    cross = np.array([0.1, 0.9, 0.5])
    alone = bench.rerank(ranked, cross, rerank_k=3, cosine_weight=0.0)
    assert [c for c, _ in alone[0]] == [2, 3, 1, 4]
    # blended: z-scores summed, chunk 1's cosine lifts it above chunk 3
    mixed = bench.rerank(ranked, cross, rerank_k=3, cosine_weight=1.0)
    assert [c for c, _ in mixed[0]] == [2, 1, 3, 4]


def test_score_agreement_counts_the_top_chunks_kept_and_their_order():
    reference = np.array([0.9, 0.5, 0.1, 0.7])
    ranked = [[(1, 0), (2, 0)], [(3, 0), (4, 0)]]
    same = bench.score_agreement(reference, reference, ranked, ranked, top=2)
    assert (same.pearson, same.max_abs_diff, same.top_overlap, same.same_top) == (1, 0, 1, 1)
    swapped = [[(2, 0), (1, 0)], [(3, 0), (5, 0)]]
    other = bench.score_agreement(reference, reference + 0.01, ranked, swapped, top=2)
    assert other.max_abs_diff == pytest.approx(0.01) and other.pearson == pytest.approx(1.0)
    assert other.top_overlap == pytest.approx(0.75) and other.same_top == 0.0


@pytest.mark.parametrize("layout", ["entity", "article"])
def test_every_held_out_ticket_finds_its_gold_in_the_chunked_layout(layout):
    corpus = bench.build_corpus(layout, 900, 120)
    assert corpus.ids == list(range(1, len(corpus.texts) + 1))
    tickets = flywheel_bench.load_tickets(200)
    _, test = flywheel_bench.split(tickets, flywheel_bench.HOLDOUT)
    queries = bench.held_out_queries(test, {layout: corpus})
    assert queries and all(q.gold[layout] for q in queries)
    assert all(c in range(1, len(corpus.texts) + 1) for q in queries for c in q.gold[layout])
    if layout == "article":  # an article's gold chunk holds the FAQ answer the label names
        texts = dict(zip(corpus.ids, corpus.texts, strict=True))
        item = next(i for t in test for i in t.gold if i.startswith("faq:"))
        _, domain, entity_id, faq_id = item.split(":")
        answer = bench.layouts.knowledge()[domain][entity_id]["faqs"][faq_id]["answer"]
        opening = " ".join(answer.split()[:5]).lower()
        assert any(opening in " ".join(texts[c].split()).lower() for c in corpus.gold[item])


def test_the_options_keep_torch_first_and_refuse_unknown_backends(capsys):
    args = bench.parse_args(["--backends", "openvino,auto", "--layouts", "article"])
    assert args.backends == ["torch", "openvino", "auto"] and args.layouts == ["article"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--backends", "tensorrt"])
    assert "distinct backends" in capsys.readouterr().err


def test_rates_time_every_pass_and_hand_back_the_last_outputs_and_latency_cycles_its_calls():
    seen: list[int] = []

    def run(items: list) -> int:
        seen.append(len(items))
        return sum(items)

    per_s, outputs = bench.rates(run, list(range(20)), passes=3)
    assert len(per_s) == 3 and all(r > 0 for r in per_s) and outputs == sum(range(20))
    assert seen == [8, 20, 20, 20], "one warm-up call on a few items, then the timed passes"
    seen.clear()
    found = bench.latency(run, [[1], [1, 2]], count=7)
    assert found.calls == 7 and found.p50_ms <= found.p95_ms
    assert seen == [1, 2, 1, 2, 1, 2, 1, 2, 1], "the warm-up calls, then 7 timed ones in turn"
