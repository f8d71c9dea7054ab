"""``proctop module install|remove|status`` (issue 22 item 6): each refusal one line and its documented status.

The whole path (dkms add/build/install for the running kernel, modprobe, proctop as
uid 65534 on the module it loaded, remove) runs where a kernel can load modules: in
the QEMU matrix (``kmod/tests/dkms-install.sh``, ``make -C kmod check``). This host's
kernel has no module support (no /proc/modules), so here the command line runs for
real up to the check that stops it; where a check needs what this host lacks (module
support, so that the next check is reached) the path it looks at is pointed at a
file of the test's (``module_cli(inject=...)``). The flow after the checks (which
steps a second install skips, what a failed build says) runs against a stand-in
``dkms`` on PATH that answers with dkms 3.0.10's own words.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, need_tool, proctop_cmd

from proctop.cli import main as cli
from proctop.kernel import probe as probe_mod

NEUTRAL = "/"
RELEASE = platform.release()

#: Runs the real command line with some of module_install's paths replaced (argv[1]: JSON {name: path}).
WRAPPER = """
import json, sys
from pathlib import Path
from proctop.kernel import module_install
for name, path in json.loads(sys.argv[1]).items():
    setattr(module_install, name, Path(path))
from proctop.cli.main import main
raise SystemExit(main(sys.argv[2:]))
"""


def module_cli(*args: str, inject: dict[str, Path] | None = None, path: str | None = None):
    """``proctop module ARGS`` in a subprocess; ``inject`` replaces module_install's paths, ``path`` sets PATH."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    if inject is None:
        argv = proctop_cmd("module", *args)
    else:
        argv = [sys.executable, "-c", WRAPPER, json.dumps({k: str(v) for k, v in inject.items()}), "module", *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=NEUTRAL, env=env, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert proc.stderr == f"proctop: {text}\n"
    assert "Traceback" not in proc.stdout


@pytest.fixture
def with_modules(tmp_path) -> dict[str, Path]:
    """A kernel that can load modules, as far as module_install looks (a /proc/modules of the test's)."""
    modules = tmp_path / "proc-modules"
    modules.write_text("")
    return {"PROC_MODULES": modules}


def test_not_root_is_one_line_and_status_4(nonroot_child):
    """As uid 65534 (a forked child: the venv may be unreadable to it), through cli.main."""

    def as_nobody():
        results = []
        for action in ("install", "remove"):
            err, out = io.StringIO(), io.StringIO()
            sys.stderr, sys.stdout = err, out
            try:
                status = cli.main(["module", action])
            finally:
                sys.stderr, sys.stdout = sys.__stderr__, sys.__stdout__
            results.append((status, err.getvalue(), out.getvalue()))
        return results

    (install, remove) = nonroot_child(as_nobody)
    assert install == (4, "proctop: module install must run as root: sudo proctop module install\n", "")
    assert remove == (4, "proctop: module remove must run as root: sudo proctop module remove\n", "")


def test_a_kernel_without_module_support_is_one_line_and_status_3(tmp_path):
    """This host's kernel (CONFIG_MODULES=n): the real /proc/modules is absent; elsewhere one of the test's."""
    inject = None if not Path("/proc/modules").exists() else {"PROC_MODULES": tmp_path / "absent"}
    proc = module_cli("install", inject=inject)
    one_line(
        proc,
        3,
        f"kernel {RELEASE} cannot load modules (no /proc/modules: built without CONFIG_MODULES); "
        "the proctop_cn module is no option here",
    )
    status = module_cli("status", inject=inject)
    assert status.returncode == 3 and status.stderr == "", status.stderr
    assert f"loaded: no (kernel {RELEASE} cannot load modules: no /proc/modules)" in status.stdout.splitlines()
    assert "at boot: no" in status.stdout.splitlines()


def test_no_dkms_names_the_package(with_modules, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = module_cli("install", inject=with_modules, path=str(empty))
    one_line(proc, 3, "dkms is not installed: apt install dkms (Fedora/RHEL: dnf install dkms)")
    assert module_cli("status", inject=with_modules, path=str(empty)).stdout.splitlines()[1] == (
        "dkms: not installed (apt install dkms)"
    )


def test_no_headers_names_the_running_kernels_package(with_modules, tmp_path):
    need_tool("dkms")
    lib_modules = tmp_path / "lib-modules"
    (lib_modules / RELEASE).mkdir(parents=True)  # the modules' directory, but no build/
    proc = module_cli("install", inject={**with_modules, "LIB_MODULES": lib_modules})
    one_line(
        proc,
        3,
        f"no headers for the running kernel {RELEASE} ({lib_modules}/{RELEASE}/build is missing): "
        f"apt install linux-headers-{RELEASE} (Fedora/RHEL: dnf install kernel-devel-{RELEASE})",
    )


def test_usage_errors_are_one_line_and_status_2():
    for args, says in (
        ([], "the following arguments are required: {install,remove,status}"),
        (
            ["frob"],
            "argument {install,remove,status}: invalid choice: 'frob' (choose from 'install', 'remove', 'status')",
        ),
        (["install", "--", "ls"], "module: takes no -- COMMAND"),
    ):
        one_line(module_cli(*args), 2, says)
    proc = subprocess.run(proctop_cmd("--json", "module", "status"), capture_output=True, text=True, cwd=NEUTRAL)
    one_line(proc, 2, "module: no options go before it (proctop module install)")


# --- the steps after the checks, against a stand-in dkms ---------------------------------

#: A dkms that keeps its state in $FAKE_DKMS_STATE (one "version kernel state" line), logs each call to
#: $FAKE_DKMS_LOG and says what dkms 3.0.10 says; FAKE_DKMS_BUILD=fail makes the build fail as 3.0.10 reports it.
FAKE_DKMS = r"""#!/bin/sh
echo "$*" >> "$FAKE_DKMS_LOG"
case $1 in
status) [ -s "$FAKE_DKMS_STATE" ] && read -r v k s < "$FAKE_DKMS_STATE" && \
        if [ "$k" = - ]; then echo "proctop_cn/$v: $s"; else echo "proctop_cn/$v, $k, x86_64: $s"; fi ;;
add) echo "0.1 - added" > "$FAKE_DKMS_STATE" ;;
build) if [ "$FAKE_DKMS_BUILD" = fail ]; then
         echo "Error! Bad return status for module build on kernel: $7 (x86_64)" >&2
         echo "Consult /var/lib/dkms/proctop_cn/0.1/build/make.log for more information." >&2
         exit 10
       fi
       echo "0.1 $7 built" > "$FAKE_DKMS_STATE" ;;
install) echo "0.1 $7 installed" > "$FAKE_DKMS_STATE" ;;
remove) : > "$FAKE_DKMS_STATE" ;;
esac
"""
#: modprobe that "loads" by creating the injected sysfs directory ($FAKE_SYSFS).
FAKE_MODPROBE = """#!/bin/sh
echo "modprobe $*" >> "$FAKE_DKMS_LOG"
if [ "$1" = -r ]; then rmdir "$FAKE_SYSFS"; else mkdir "$FAKE_SYSFS"; fi
"""


@pytest.fixture
def stand_in(with_modules, tmp_path, monkeypatch):
    """Paths and a PATH for a run against the stand-in dkms and modprobe; root only (install checks it)."""
    if os.geteuid() != 0:
        pytest.skip("install refuses non-root before any step (CI runs as root)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("dkms", FAKE_DKMS), ("modprobe", FAKE_MODPROBE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    lib_modules = tmp_path / "lib-modules"
    (lib_modules / RELEASE / "build").mkdir(parents=True)
    inject = {
        **with_modules,
        "LIB_MODULES": lib_modules,
        "USR_SRC": tmp_path / "usr-src",
        "MODULES_LOAD": tmp_path / "modules-load.d" / "proctop_cn.conf",
        "KMOD_SYSFS": tmp_path / "sys-module-proctop_cn",
    }
    monkeypatch.setenv("FAKE_DKMS_LOG", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_DKMS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_SYSFS", str(inject["KMOD_SYSFS"]))
    (tmp_path / "calls").write_text("")
    return inject, f"{bin_dir}:/usr/bin:/bin"


def calls(inject) -> list[str]:
    log = Path(os.environ["FAKE_DKMS_LOG"])
    lines = log.read_text().splitlines()
    log.write_text("")
    return [" ".join(line.split()[:1]) for line in lines]


def test_install_runs_each_step_once_then_has_nothing_to_do_and_remove_undoes_it(stand_in):
    inject, path = stand_in
    proc = module_cli("install", inject=inject, path=path)
    assert proc.returncode == 0, proc.stderr
    assert calls(inject) == ["status", "add", "build", "install", "modprobe"]
    assert (inject["USR_SRC"] / "proctop_cn-0.1" / "proctop_cn.c").is_file()
    assert inject["MODULES_LOAD"].read_text().splitlines()[-1] == "proctop_cn"
    assert inject["KMOD_SYSFS"].is_dir()
    assert f"proctop: proctop_cn/0.1 installed for kernel {RELEASE} and loaded" in proc.stdout

    again = module_cli("install", inject=inject, path=path)
    assert again.returncode == 0, again.stderr
    assert calls(inject) == ["status"]
    assert again.stdout == (
        f"proctop: proctop_cn/0.1 is already installed for kernel {RELEASE}, loaded and loaded at boot: nothing to do\n"
    )
    status = module_cli("status", inject=inject, path=path)
    assert status.returncode == 0 and f"dkms: 0.1 installed for {RELEASE}" in status.stdout.splitlines()
    assert calls(inject) == ["status"]

    removed = module_cli("remove", inject=inject, path=path)
    assert removed.returncode == 0, removed.stderr
    assert calls(inject) == ["modprobe", "status", "remove"]
    assert not inject["KMOD_SYSFS"].exists() and not inject["MODULES_LOAD"].exists()
    assert not (inject["USR_SRC"] / "proctop_cn-0.1").exists()
    again = module_cli("remove", inject=inject, path=path)
    assert (again.returncode, again.stdout) == (0, "proctop: proctop_cn is not installed: nothing to do\n")
    assert module_cli("status", inject=inject, path=path).returncode == 1  # not loaded


def test_a_failed_build_names_dkms_make_log(stand_in, monkeypatch):
    inject, path = stand_in
    monkeypatch.setenv("FAKE_DKMS_BUILD", "fail")
    proc = module_cli("install", inject=inject, path=path)
    one_line(
        proc,
        1,
        f"dkms could not build proctop_cn/0.1 for kernel {RELEASE}: see /var/lib/dkms/proctop_cn/0.1/build/make.log",
    )
    assert calls(inject) == ["status", "add", "build"]
    assert not inject["KMOD_SYSFS"].exists()


def test_changed_source_under_the_same_version_is_rebuilt(stand_in):
    """An upgrade of proctop that changed proctop_cn.c but not dkms.conf's version: the old build is dropped."""
    inject, path = stand_in
    assert module_cli("install", inject=inject, path=path).returncode == 0
    calls(inject)
    (inject["USR_SRC"] / "proctop_cn-0.1" / "proctop_cn.c").write_text("/* an older release */\n")
    inject["KMOD_SYSFS"].rmdir()  # unloaded meanwhile
    proc = module_cli("install", inject=inject, path=path)
    assert proc.returncode == 0, proc.stderr
    assert calls(inject) == ["status", "remove", "add", "build", "install", "modprobe"]
    shipped = (REPO / "kmod" / "proctop_cn.c").read_bytes()
    assert (inject["USR_SRC"] / "proctop_cn-0.1" / "proctop_cn.c").read_bytes() == shipped


def test_the_refusal_advice_names_the_command(monkeypatch, tmp_path):
    """Where modules can load, the advice is ``proctop module install``, after the packages it lacks here."""
    modules = tmp_path / "proc-modules"
    modules.write_text("")
    real = probe_mod.Path

    def path(*parts):
        return modules if str(real(*parts)) == "/proc/modules" else real(*parts)

    monkeypatch.setattr(probe_mod, "Path", path)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    headers = real(f"/lib/modules/{RELEASE}/build").exists()
    want = f"sudo apt install dkms{'' if headers else f' linux-headers-{RELEASE}'} && sudo proctop module install"
    assert probe_mod.module_advice() == want


def test_a_file_it_cannot_write_is_one_line(stand_in, tmp_path):
    """/usr/src not writable (here: a path below a plain file): one line naming it, status 1."""
    inject, path = stand_in
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    inject = {**inject, "USR_SRC": blocker / "usr-src"}
    proc = module_cli("install", inject=inject, path=path)
    one_line(proc, 1, f"module install: Not a directory ({blocker}/usr-src/proctop_cn-0.1)")
