"""Which PromQL the advisor asks for, and how the answers land in each model's history."""

from modelpilot.advisor.source import assemble, queries


def test_each_objective_kind_gets_its_histogram_and_the_engine_its_fallbacks() -> None:
    wanted = queries(60, [("EndToEnd", 95), ("TimeToFirstToken", 90)])
    assert "modelpilot_end_to_end_response_time_seconds_bucket" in wanted["latency:EndToEnd@95"]
    ttft = wanted["latency:TimeToFirstToken@90"]
    assert ttft.startswith("histogram_quantile(0.9,")
    assert "modelpilot_time_to_first_token_seconds_bucket" in ttft
    # One model's engine is vLLM (old or new names), another's SGLang: "or" keeps the first
    # name each model has.
    assert wanted["kv_cache"].split(" or ") == [
        "avg by (namespace, model_deployment) (vllm:kv_cache_usage_perc)",
        "avg by (namespace, model_deployment) (vllm:gpu_cache_usage_perc)",
        "avg by (namespace, model_deployment) (sglang:token_usage)",
    ]
    assert "tgi_queue_size" in wanted["engine_queue"]


def test_a_model_reads_the_latency_of_its_own_objective() -> None:
    times = [0.0, 60.0]
    labels = {"namespace": "ns", "model_deployment": "chat"}
    results = {
        "latency:EndToEnd@95": [{"metric": labels, "values": [[0, "9.5"], [60, "9.1"]]}],
        "latency:TimeToFirstToken@95#0": [{"metric": labels, "values": [[0, "0.3"]]}],
        "kv_cache": [{"metric": labels, "values": [[60, "0.97"]]}],
        "engine_queue": [{"metric": labels, "values": [[0, "4"], [60, "NaN"]]}],
    }
    ttft = assemble(results, times, 60, {("ns", "chat"): ("TimeToFirstToken", 95)})
    assert ttft[("ns", "chat")].latency == [0.3, None]
    assert ttft[("ns", "chat")].kv_cache == [None, 0.97]
    assert ttft[("ns", "chat")].engine_queue == [4.0, None]
    e2e = assemble(results, times, 60, {})
    assert e2e[("ns", "chat")].latency == [9.5, 9.1]


def test_answers_land_on_the_grid_summed_with_gaps_and_non_numbers_left_unknown() -> None:
    times = [0.0, 60.0, 120.0, 180.0]
    labels = {"namespace": "ns", "model_deployment": "chat"}

    def answer(values: list[list[object]], **more: str) -> dict[str, object]:
        return {"metric": labels | more, "values": values}

    results = {
        "rps_by_class": [  # a class with gaps first, then a whole one added to it
            answer([[60, "0.5"], [180, "1"]], status_class="5xx"),
            answer([[0, "1"], [60, "2"], [120, "3"], [180, "4"]], status_class="2xx"),
        ],
        "concurrency": [answer([[-60, "9"], [0, "1"], [60, "2"]])],  # one before the grid
        "desired": [answer([[0, "1"], [60, "+Inf"], [120, "2"], [180, "3"]])],
        "queue": [answer([[0, "5"], [60, "6"], [120, "7"], [180, "8"]])],
    }
    h = assemble(results, times, 60, {})[("ns", "chat")]
    assert h.rps == [1.0, 2.5, 3.0, 5.0]
    assert h.errors == [None, 0.5, None, 1.0]
    assert h.concurrency == [1.0, 2.0, None, None]
    assert h.desired == [1.0, None, 2.0, 3.0]
    assert h.queue == [5.0, 6.0, 7.0, 8.0]
