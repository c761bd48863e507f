"""The run's results table: each trained stage's change against SFT, as printed."""

from diadem_ray.driver.evaluation import results_table


def test_change_against_sft_of_the_printed_values():
    evals = {
        "untrained": {"ref_f1": 0.0, "asr_f1": 0.0},
        "sft": {"ref_f1": 45.26, "asr_f1": 95.74},
        "grpo_stage1": {"ref_f1": 47.34, "asr_f1": 96.12},
        "grpo_stage2": {"ref_f1": 50.449, "asr_f1": 94.66},
    }
    rows = {line.split()[0]: line.split()[1:] for line in results_table(evals, ["easy"]).splitlines()[1:]}
    assert rows["untrained"] == ["0.0", "0.0"] and rows["sft"] == ["45.3", "95.7"]
    # 47.3 - 45.3 and 96.1 - 95.7 (not 2.08 / 0.38 of the unrounded scores)
    assert rows["grpo_stage1"] == ["47.3", "96.1", "+2.0", "/", "+0.4"]
    assert rows["grpo_stage2"] == ["50.4", "94.7", "+5.1", "/", "-1.0"]
    assert "by held-out bucket" not in results_table(evals, ["easy"])


def test_no_change_column_without_sft_and_buckets_listed():
    evals = {
        "grpo_stage1": {"ref_f1": 10.0, "asr_f1": 90.0, "hard/ref_f1": 5.0, "hard/asr_f1": 80.0},
    }
    table, by_bucket = results_table(evals, ["easy", "hard"]).split("\n\n")
    assert table.splitlines()[1].split() == ["grpo_stage1", "10.0", "90.0"]
    assert by_bucket.splitlines()[1].split() == ["policy", "hard"]
    assert by_bucket.splitlines()[2].split() == ["grpo_stage1", "5.0", "/", "80.0"]
