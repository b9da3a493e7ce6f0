"""bip-train as the tests run it: its command lines, in this process on the fake loaders, in a forked
copy of this process (no start-up imports: milliseconds), or as a new process under bip-launch; and the
environment of any child process a test starts (the repository importable, one thread, no GPU)."""

import os
import subprocess
import sys
import tempfile
import traceback

from tests.helpers import ROOT
from tests.helpers.outputs import error_lines


def child_env(**extra):
    """os.environ for a new process: the repository (bip_dist, launcher, tests) importable, one thread
    per process on the shared CPU, no GPU; then `extra`."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}


def train_argv(out_dir, *sets):
    """bip-train's arguments for the digits demo config in `out_dir`, `sets` (KEY=VALUE) as overrides."""
    argv = ["--config", str(ROOT / "configs/digits/pretrain.yaml")]
    for s in (f"out_dir={out_dir}", *sets):
        argv += ["--set", s]
    return argv


def short_argv(out_dir, *sets):
    """Two steps of ResNet-20s at batch 4: for tests where the data is what fails."""
    return train_argv(out_dir, "train.max_steps=2", "data.batch_size=4", "model.arch=resnet20s", *sets)


def logged_argv(out_dir, data_root, *sets):
    """Batch 8 over `data_root`, every step logged to metrics.jsonl, no progress bar or TensorBoard."""
    return train_argv(out_dir, f"data.root={data_root}", "data.batch_size=8", "train.progress=false",
                      "train.log_every=1", "log.tensorboard=false", *sets)


def bip_train(out, trainer, *extra, args=()):
    """Exit status of `bip-train --config <out>/c.yaml --set ... ARGS` for a short run of `trainer` on the
    tiny model (runs.overrides), in this process with the fake loaders (for this call only)."""
    from launcher.worker import main
    from tests.helpers import loaders, runs
    os.makedirs(out, exist_ok=True)
    config = os.path.join(out, "c.yaml")
    with open(config, "w") as f:
        f.write("name: ck\n")
    sets = [a for o in runs.overrides(out, trainer, "log.tensorboard=false", *extra) for a in ("--set", o)]
    with loaders.in_train_loop():
        return main(["--config", config, *sets, *args])


def in_child(fn, *args):
    """fn(*args) -> exit code, run in a forked copy of this process, for faults that could kill the
    process that meets them: (exit code, or -signal when it died of one, such as SIGBUS; its error_lines)."""
    with tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 70
            try:
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = open(os.devnull, "w"), err
                code = fn(*args)
            except SystemExit as e:
                code = e.code
            except BaseException:
                traceback.print_exc()  # an uncaught error: a traceback and exit 70
            finally:
                err.flush()
                os._exit(code if isinstance(code, int) else 1)
        status = os.waitpid(pid, 0)[1]
        err.seek(0)
        return os.waitstatus_to_exitcode(status), error_lines(err.read())


def fork_train(argv):
    """bip-train `argv` in a forked copy of this process, running alongside the test (to be signalled):
    a multiprocessing Process whose exitcode is bip-train's exit status; its stderr is this process's
    (pytest's capfd sees it)."""
    import multiprocessing
    proc = multiprocessing.get_context("fork").Process(target=_train, args=(argv,))
    proc.start()
    return proc


def _train(argv):
    from launcher.worker import main
    sys.exit(main(argv))


def launch(argv):
    """bip-launch (torchrun, one worker) with bip-train `argv`, as a new process."""
    return subprocess.Popen([sys.executable, "-m", "launcher.launch", "--nproc-per-node", "1", *argv], cwd=ROOT,
                            env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
