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
