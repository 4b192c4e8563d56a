"""``python -m greenres.sim PROFILE program.py args...``: any unmodified program runs on the
simulated driver, even one that touches cuda.core before it imports greenres (which
``GREENRES_SIM`` alone cannot catch: it takes effect when greenres is imported).
"""

import json

import pytest

from support import childprocess

pytestmark = pytest.mark.sim_only

# cuda.core first, and a driver call before anything of greenres is imported.
CUDA_CORE_FIRST = r"""
import json, os, sys
from cuda.core import Device
from cuda.bindings import driver
dev = Device(0)
dev.set_current()
sms = dev.resources.sm.sm_count
count = driver.cuDeviceGetCount()[1]
version = driver.cuDriverGetVersion()[1]
import greenres.sim as sim
import app_sibling  # found only if the program's folder is first on the import path
print(json.dumps(dict(
    name=__name__, argv=sys.argv, sibling=app_sibling.__file__, sms=sms, devices=count,
    version=version,
    installed=sim.is_installed(), env=os.environ.get("GREENRES_SIM"),
    primary=sim.live_objects()["primary_context"],
)))
if "--exit" in sys.argv:
    raise SystemExit(int(sys.argv[-1]))
"""


def write_program(folder, name):
    """CUDA_CORE_FIRST as ``folder/name``, with the module it imports from its folder."""
    (folder / "app_sibling.py").write_text("")
    program = folder / name
    program.write_text(CUDA_CORE_FIRST)
    return program


def runner(args, tmp_path, **env):
    return childprocess.run_child(["-m", "greenres.sim", *args], GREENRES_SIM=None, **env)


def result(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_runs_a_program_that_imports_cuda_core_first(tmp_path):
    pytest.importorskip("cuda.core")  # the program imports it first
    program = write_program(tmp_path, "app.py")
    out = result(runner(["h100", str(program), "one", "--two", "3"], tmp_path))
    assert out["name"] == "__main__"
    assert out["argv"] == [str(program), "one", "--two", "3"]  # as `python app.py ...` gives
    # the program's folder first on the import path, as python does
    assert out["sibling"] == str(tmp_path / "app_sibling.py")
    assert out["sms"] == 132 and out["devices"] == 1
    assert out["installed"] is True
    assert out["env"] == "1xh100@13010"  # so greenres in the program (and children) agrees
    assert out["primary"] == 1  # the simulator's own bookkeeping saw cuda.core's calls


def test_module_form_with_a_count_and_driver_version(tmp_path):
    pytest.importorskip("cuda.core")  # the program imports it first
    write_program(tmp_path, "app_mod.py")
    done = runner(["2xh100@13000", "-m", "app_mod", "x"], tmp_path, PYTHONPATH=tmp_path)
    out = result(done)
    assert out["name"] == "__main__"
    assert out["argv"] == [str(tmp_path / "app_mod.py"), "x"]  # as `python -m app_mod x`
    assert out["devices"] == 2 and out["version"] == 13000
    assert out["env"] == "2xh100@13000"


def test_driver_version_option_and_exit_status(tmp_path):
    pytest.importorskip("cuda.core")  # the program imports it first
    program = write_program(tmp_path, "app.py")
    done = runner(["--driver-version", "12090", "a100", str(program), "--exit", "7"], tmp_path)
    assert done.returncode == 7, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["version"] == 12090 and out["sms"] == 108


def test_help(tmp_path):
    done = runner(["--help"], tmp_path)
    assert done.returncode == 0
    assert "usage: python -m greenres.sim" in done.stdout
    assert "PROFILE" in done.stdout and "h100" in done.stdout and "-m MODULE" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "app.py"], "unknown simulated device profile 'nope'; known profiles: "),
        (["0xh100", "app.py"], "device count must be at least 1"),
        (["h100"], "missing the program to run"),
        ([], "missing PROFILE and program"),
        (["h100", "-m"], "-m needs a module name"),
        (["--driver-version", "x", "h100", "app.py"], "--driver-version must be an integer"),
        (["--driver-version", "13000", "h100@12090", "app.py"], "two driver versions"),
        (["--frobnicate", "h100", "app.py"], "unknown option '--frobnicate'"),
        (["h100@100", "app.py"], "driver_version 100 rejected"),
        (["h100@x", "app.py"], "the driver version after '@' must be an integer"),
        (["h100", "no_such_program.py"], "can't open file 'no_such_program.py'"),
    ],
)
def test_clear_errors(tmp_path, args, message):
    done = runner(args, tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "python -m greenres.sim: error: " in done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_greenres_sim_set_to_another_machine_is_an_error(tmp_path):
    """GREENRES_SIM installs its machine when greenres.sim is imported (the runner imports it):
    the runner cannot then make another one, and says so."""
    pytest.importorskip("cuda.core")  # the program imports it first
    program = write_program(tmp_path, "app.py")
    done = childprocess.run_child(
        ["-m", "greenres.sim", "h100", str(program)], GREENRES_SIM="8xh100"
    )
    assert done.returncode == 2
    assert "GREENRES_SIM=8xh100 installed the simulator when greenres was imported" in done.stderr
    same = childprocess.run_child(
        ["-m", "greenres.sim", "8xh100", str(program)], GREENRES_SIM="8xh100"
    )
    assert result(same)["devices"] == 8
