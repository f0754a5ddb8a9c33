"""bf16 detection and the fp32 fallback, with the CPU's flags faked both ways; the benchmarks' summaries by hand."""

import json
from pathlib import Path

import numpy as np
import pytest
from trl import GRPOConfig

from memoryr.bench.memory import format_memory_bench, run_memory_bench, step_cost
from memoryr.bench.step import format_table, load_variants, summarise
from memoryr.hardware import cpu_bf16_kind, cpu_precision_fallback

AMX = "processor : 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n"
AVX512_BF16 = "processor : 0\nflags\t\t: fpu sse avx512f avx512_vnni avx512_bf16\n"
PLAIN = "processor : 0\nflags\t\t: fpu sse avx2 avx512f\n"


def test_bf16_kind_from_cpu_flags():
    assert cpu_bf16_kind(AMX) == "amx"
    assert cpu_bf16_kind(AVX512_BF16) == "avx512_bf16"
    assert cpu_bf16_kind(PLAIN) is None
    assert cpu_bf16_kind("") is None


def _args(bf16: bool) -> GRPOConfig:
    return GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=bf16, per_device_train_batch_size=8, num_generations=8)


def test_bf16_falls_back_to_fp32_without_bf16_units():
    args = _args(bf16=True)
    notice = cpu_precision_fallback(args, PLAIN)
    assert args.bf16 is False and "fp32 instead of bf16" in notice


@pytest.mark.parametrize("cpuinfo", [AMX, AVX512_BF16])
def test_bf16_is_kept_with_bf16_units(cpuinfo):
    args = _args(bf16=True)
    assert cpu_precision_fallback(args, cpuinfo) is None and args.bf16 is True


def test_fp32_runs_are_left_alone():
    args = _args(bf16=False)
    assert cpu_precision_fallback(args, PLAIN) is None and args.bf16 is False


def test_bench_variants_skip_bf16_without_units(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("base: {}\nbf16: {args: [--bf16, 'true']}\nthreads: {env: {OMP_NUM_THREADS: 1}}\n")
    variants, skipped = load_variants(path, None)
    assert list(variants) == ["base", "threads"] and skipped == ["bf16"]
    assert variants["threads"]["env"] == {"OMP_NUM_THREADS": "1"}
    variants, skipped = load_variants(path, "amx")
    assert list(variants) == ["base", "bf16", "threads"] and skipped == []
    path.write_text("bad: {flags: [1]}\n")
    with pytest.raises(ValueError, match="may only have 'args'"):
        load_variants(path, None)


def test_bench_summary_is_the_mean_after_the_first_step():
    # the second variant generates two steps' completions on one step and none on the next
    rows = [
        {"step_s": 100.0, "generate_s": 90.0, "gen_tokens": 10, "outcome_reward_s": 0.1,
         "memory_reward_s": 0.2, "train_s": 9.7, "mean_length": 50, "peak_rss_gib": 3.0},
        {"step_s": 16.0, "generate_s": 12.0, "gen_tokens": 960, "outcome_reward_s": 0.1,
         "memory_reward_s": 0.2, "train_s": 3.7, "mean_length": 60, "peak_rss_gib": 3.5},
        {"step_s": 4.0, "generate_s": 0.0, "gen_tokens": 0, "outcome_reward_s": 0.1,
         "memory_reward_s": 0.2, "train_s": 3.7, "mean_length": None, "peak_rss_gib": 3.4},
    ]
    s = summarise(rows)
    assert s["step_s"] == 10.0 and s["generate_s"] == 6.0 and s["mean_length"] == 60.0
    assert s["gen_tokens_per_s"] == 80.0 and s["peak_rss_gib"] == 3.5  # 960 tokens in 12 s
    assert s["steps_per_hour"] == pytest.approx(360.0)
    assert s["memory_share"] == pytest.approx(0.02)  # 0.2 s of a 10 s step
    table = format_table({"base": s}, "base")
    assert "memory %" in table.splitlines()[0] and "     2.0 " in table.splitlines()[2]


def test_memory_bench_prices_a_step_and_its_share():
    results = {"encode": [{"completions": 256, "seconds": 0.5}],
               "memory": [{"keys": 1000, "score_and_update_ms": 0.2}, {"keys": 10000, "score_and_update_ms": 0.5}]}
    cost = step_cost(results, step_seconds=10.0)
    # one encode call of 256 completions, and 256 x 0.5 ms at the largest memory
    assert cost["memory_s"] == pytest.approx(0.128) and cost["total_s"] == pytest.approx(0.628)
    assert cost["share"] == pytest.approx(0.0628) and cost["keys"] == 10000
    assert step_cost(results)["share"] is None


def test_memory_bench_runs_end_to_end_with_any_encoder():
    class RandomEncoder:
        dim = 384

        def encode(self, texts):
            return np.random.default_rng(0).standard_normal((len(texts), self.dim)).astype(np.float32)

    results = run_memory_bench(keys_list=(20,), per_key=3, group=4, steps=2, encoder=RandomEncoder(),
                               step_completions=8, step_seconds=2.0)
    assert [e["completions"] for e in results["encode"]] == [8, 8] and results["step"]["completions"] == 8
    text = format_memory_bench(results)
    assert "encode on cpu: 8 texts" in text and "memory reward per step of 8 completions" in text
    assert f"= {100 * results['step']['total_s'] / 2.0:.1f}% of a 2 s step" in text


def test_study_bench_splits_a_runs_time_into_its_phases(tmp_path):
    from memoryr.bench.study import ROWS, phase_split

    run = tmp_path / "study2-r1-seed1"
    run.mkdir()
    rows = [{"loss": 0.1, "step": 1, "step_time": 10.0}, {"step": 1, "eval/accuracy": 0.5, "eval/seconds": 40.0},
            {"loss": 0.1, "step": 2, "step_time": 12.0}, {"step": 2, "train_runtime": 70.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    phases = [{"run": run.name, "phase": "train", "seconds": 100.0}, {"run": run.name, "phase": "eval-best",
              "seconds": 30.0}, {"run": "other-seed1", "phase": "train", "seconds": 5.0}]
    split = phase_split(run, phases)
    # start-up = 100 - 70, steps 22, evaluations 40, the rest of the loop 70 - 22 - 40; eval-last copied
    assert [split[row] for row in ROWS] == [30.0, 22.0, 40.0, 8.0, 30.0, None]
    phases += [{"run": run.name, "phase": "eval-last 1/2", "seconds": 12.0},
               {"run": run.name, "phase": "eval-last 2/2", "seconds": 13.0}]
    assert phase_split(run, phases)[ROWS[-1]] == 25.0  # an evaluation in shards: their seconds summed


def test_study_bench_variants_are_overrides_or_overrides_with_sweep_keys():
    from memoryr.bench.study import variant_spec
    from memoryr.yaml_file import read_yaml

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "study-variants.yaml"
    variants = {name: variant_spec(name, spec) for name, spec in read_yaml(path).items()}
    assert variants["now"] == ([], {})
    assert variants["today"] == (["--eval_share_prefix", "false", "--eval_batch_size", "32"], {"split_evaluations": False})
    with pytest.raises(ValueError, match="variant odd: expected a list of overrides or a mapping"):
        variant_spec("odd", {"overides": []})
