"""The console: one live progress line on a terminal, plain lines elsewhere; what the main
command shows by default and with --verbose; TensorFlow's C++ banners kept off stderr."""

import io
import subprocess
import sys

from framework.console import Console
from helpers import REPO, cli_environment, run_cli
from plugins.hooks.progress import progress_line


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_progress_redraws_one_line_and_other_lines_go_below_it():
    screen = Terminal()
    console = Console(screen)
    console.progress("step 1/10")
    console.progress("step 2/10")
    console.line("eval at step 2: accuracy 0.5")
    console.progress("step 3/10")
    text = screen.getvalue()
    assert text.startswith("\rstep 1/10")
    assert "\rstep 2/10" in text and "\nstep" not in text  # redrawn, never a new line
    assert text.count("\n") == 2  # ends the progress line, then the eval line's own
    assert text.split("\n")[1] == "eval at step 2: accuracy 0.5"


def test_elsewhere_every_progress_update_is_a_line():
    log = io.StringIO()
    console = Console(log)
    console.progress("step 1/10")
    console.progress("step 2/10")
    assert log.getvalue() == "step 1/10\nstep 2/10\n"


def test_progress_line_shows_bar_loss_rate_and_time_left():
    assert progress_line(30, 120, 0.51234, 12.5, 7.2) == (
        "step 30/120 [######..................]  25% · loss 0.5123 · 12.5 steps/s · "
        "ETA 0:00:07")


LINEAR = ["--gin_file=gin/linear_regression.gin", "--gin_bindings=Experiment.train_steps=200"]


def test_the_default_console_of_a_regression_shows_the_learned_weight_and_bias(tmp_path):
    result = run_cli(*LINEAR, f"--model_dir={tmp_path / 'run'}", env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no oneDNN / CPU feature banners, no absl INFO lines
    lines = result.stdout.splitlines()
    kernel = next(line for line in lines if line.startswith("learned linear/dense/kernel"))
    bias = next(line for line in lines if line.startswith("learned linear/dense/bias"))
    assert abs(float(kernel.split("[[")[1].rstrip("]")) - 0.1) < 0.01  # y = 0.1·x + 0.3
    assert abs(float(bias.split("[")[1].rstrip("]")) - 0.3) < 0.01


def test_verbose_shows_the_log_lines(tmp_path):
    result = run_cli(*LINEAR, f"--model_dir={tmp_path / 'run'}", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "Saved checkpoint" in result.stderr


def test_native_info_lines_are_dropped_and_everything_else_passes():
    script = (
        "import os, sys\n"
        "from framework.native_logs import NativeLogFilter\n"
        "f = NativeLogFilter(); f.start()\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796268770.736029    4626 port.cc:153] oneDNN custom\\n')\n"
        "os.write(2, b'I0000 00:00:1796268770.7 4626 cpu_feature_guard.cc:227] optimized\\n"
        "To enable the following instructions: AVX2\\n')\n"
        "os.write(2, b'E0000 00:00:1796268770.7 4626 op.cc:1] a real error\\n')\n"
        "os.write(2, b'W1203 04:12:00.123 77 checkpoints.py:66] a python warning\\n')\n"
        "print('Traceback (most recent call last): kept', file=sys.stderr, flush=True)\n"
        "f.stop()\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_environment(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "E0000 00:00:1796268770.7 4626 op.cc:1] a real error",
        "W1203 04:12:00.123 77 checkpoints.py:66] a python warning",
        "Traceback (most recent call last): kept"]
