"""``proctop module install|remove|status``: the shipped ``proctop_cn`` source built and loaded through DKMS.

A kernel before 6.6 (or a 6.6+ build that refuses non-root subscribers) needs the
backport module for filtered, unprivileged events. Its source ships with the package
(``<prefix>/share/proctop/kmod``, ``probe.kmod_source``); this is the one command that
turns it into a loaded module that stays: DKMS rebuilds it at every kernel update
(``AUTOINSTALL``) and ``/etc/modules-load.d`` loads it at every boot.

``install`` (root): copies the source to ``/usr/src/proctop_cn-<version>``, then
``dkms add``, ``dkms build`` and ``dkms install`` for the running kernel, ``modprobe``,
and the modules-load.d file. Each step is skipped when already done, so a second
run changes nothing and says so. ``remove`` (root) undoes all of it; ``status``
says what is there. No Textual, no event source: only files and the tools DKMS
itself needs.

Every failure is one line and a status (``ModuleError``): 1 a step failed (the
dkms build, with its log's path; dkms install; modprobe), 3 this machine cannot
take the module (no module support, no dkms, no headers for the running kernel,
no shipped source), 4 not root.
"""

from __future__ import annotations

import filecmp
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from proctop.errors import ProctopError, write_stdout
from proctop.kernel.probe import KMOD_NAME, KMOD_SYSFS, kmod_source

#: Where the kernel lists loaded modules; absent on a kernel built without module support.
PROC_MODULES = Path("/proc/modules")
USR_SRC = Path("/usr/src")
LIB_MODULES = Path("/lib/modules")
MODULES_LOAD = Path("/etc/modules-load.d") / f"{KMOD_NAME}.conf"
#: What DKMS builds from (dkms.conf's MAKE runs kbuild with M=, which reads Kbuild).
SOURCE_FILES = ("dkms.conf", "Kbuild", "Makefile", f"{KMOD_NAME}.c")
BOOT_FILE = f"{KMOD_NAME}.modules-load.conf"

EXIT_STEP_FAILED = 1
EXIT_USAGE = 2
EXIT_CANNOT = 3
EXIT_NOT_ROOT = 4
ACTIONS = ("install", "remove", "status")  # the command line's words for them: proctop/cli/module.py


class ModuleError(ProctopError):
    """A step of ``proctop module`` that cannot be done; the message says why and what to do."""

    status = EXIT_STEP_FAILED


@dataclass(frozen=True)
class Shipped:
    """The module's source as installed with proctop, and the version its dkms.conf gives it."""

    path: Path
    version: str

    @property
    def usr_src(self) -> Path:
        return USR_SRC / f"{KMOD_NAME}-{self.version}"

    @property
    def ref(self) -> str:
        """``proctop_cn/0.1``: how dkms names it."""
        return f"{KMOD_NAME}/{self.version}"


def shipped() -> Shipped:
    src = kmod_source()
    if src is None or not all((src / name).is_file() for name in SOURCE_FILES):
        raise ModuleError(
            f"the {KMOD_NAME} module's source is not installed beside proctop (share/proctop/kmod): "
            "reinstall proctop with pip",
            status=EXIT_CANNOT,
        )
    match = re.search(r'^PACKAGE_VERSION="?([^"\s]+)"?', (src / "dkms.conf").read_text(), re.MULTILINE)
    if match is None:
        raise ModuleError(f"{src / 'dkms.conf'} names no PACKAGE_VERSION", status=EXIT_CANNOT)
    return Shipped(src, match.group(1))


def say(line: str) -> None:
    write_stdout(f"{line}\n")


# --- the checks, in the order a user can act on them --------------------------------------


def need_root(action: str) -> None:
    if os.geteuid() != 0:
        raise ModuleError(f"module {action} must run as root: sudo proctop module {action}", status=EXIT_NOT_ROOT)


def need_module_support(release: str) -> None:
    if not PROC_MODULES.exists():
        raise ModuleError(
            f"kernel {release} cannot load modules (no {PROC_MODULES}: built without CONFIG_MODULES); "
            f"the {KMOD_NAME} module is no option here",
            status=EXIT_CANNOT,
        )


def need_dkms() -> str:
    dkms = shutil.which("dkms")
    if dkms is None:
        raise ModuleError("dkms is not installed: apt install dkms (Fedora/RHEL: dnf install dkms)", status=EXIT_CANNOT)
    return dkms


def need_headers(release: str) -> None:
    if not (LIB_MODULES / release / "build").exists():
        raise ModuleError(
            f"no headers for the running kernel {release} ({LIB_MODULES / release / 'build'} is missing): "
            f"apt install linux-headers-{release} (Fedora/RHEL: dnf install kernel-devel-{release})",
            status=EXIT_CANNOT,
        )


# --- dkms --------------------------------------------------------------------------------


def _dkms(dkms: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([dkms, *argv], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def dkms_states(dkms: str, version: str | None = None, release: str | None = None) -> dict[tuple[str, str], str]:
    """``{(version, kernel): state}`` from ``dkms status`` (kernel ``""`` for a source only added).

    States are dkms's words: added, built, installed (a trailing warning in
    parentheses is dropped).
    """
    argv = ["status", "-m", KMOD_NAME]
    if version:
        argv += ["-v", version]
    if release:
        argv += ["-k", release]
    states = {}
    for line in _dkms(dkms, *argv).stdout.splitlines():
        m = re.match(rf"^{KMOD_NAME}[/,]\s*([^,:\s]+)(?:,\s*([^,:\s]+)(?:,\s*[^,:\s]+)?)?:\s*(\w+)", line)
        if m:
            states[(m.group(1), m.group(2) or "")] = m.group(3)
    return states


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "modprobe: error"))]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


def _build_failure(proc: subprocess.CompletedProcess[str]) -> str:
    """Where to look: the make log dkms names (``Consult ... for more information``), else its last error."""
    m = re.search(r"Consult (\S+) for more", proc.stdout + proc.stderr)
    return f"see {m.group(1)}" if m else _last_line(proc)


# --- the actions -------------------------------------------------------------------------


def install() -> int:
    release = platform.release()
    need_root("install")
    need_module_support(release)
    ship = shipped()
    dkms = need_dkms()
    need_headers(release)
    done: list[str] = []

    states = dkms_states(dkms, ship.version)  # one call: each dkms run takes seconds on a slow machine
    if ship.usr_src.is_dir() and not _same_source(ship):
        # another proctop's source under the same version: what dkms built from it is stale
        if states:
            _dkms(dkms, "remove", "-m", KMOD_NAME, "-v", ship.version, "--all")
            states = {}
        shutil.rmtree(ship.usr_src)
    if not ship.usr_src.is_dir():
        ship.usr_src.mkdir(parents=True)
        for name in SOURCE_FILES:
            shutil.copyfile(ship.path / name, ship.usr_src / name)
        done.append(f"copied {ship.path} to {ship.usr_src}")
    if not states:
        proc = _dkms(dkms, "add", "-m", KMOD_NAME, "-v", ship.version)
        if proc.returncode != 0:
            raise ModuleError(f"dkms add {ship.ref} failed: {_last_line(proc)}")
        done.append(f"dkms add {ship.ref}")
    state = states.get((ship.version, release), "added")
    if state not in ("built", "installed"):
        say(f"proctop: building {ship.ref} for kernel {release} with dkms (a minute or so)")
        proc = _dkms(dkms, "build", "-m", KMOD_NAME, "-v", ship.version, "-k", release)
        if proc.returncode != 0:
            raise ModuleError(f"dkms could not build {ship.ref} for kernel {release}: {_build_failure(proc)}")
        done.append(f"dkms build for {release}")
    if state != "installed":
        proc = _dkms(dkms, "install", "-m", KMOD_NAME, "-v", ship.version, "-k", release)
        if proc.returncode != 0:
            raise ModuleError(f"dkms install {ship.ref} for kernel {release} failed: {_last_line(proc)}")
        done.append(f"dkms install for {release}")
    if not KMOD_SYSFS.is_dir():
        proc = subprocess.run(["modprobe", KMOD_NAME], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ModuleError(f"modprobe {KMOD_NAME} failed: {_last_line(proc)}{_load_hint(proc)}")
        done.append("modprobe")
    boot = ship.path / BOOT_FILE
    if not (MODULES_LOAD.is_file() and filecmp.cmp(boot, MODULES_LOAD, shallow=False)):
        MODULES_LOAD.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(boot, MODULES_LOAD)
        MODULES_LOAD.chmod(0o644)
        done.append(f"wrote {MODULES_LOAD}")
    if not done:
        say(f"proctop: {ship.ref} is already installed for kernel {release}, loaded and loaded at boot: nothing to do")
    else:
        say(
            f"proctop: {ship.ref} installed for kernel {release} and loaded ({'; '.join(done)}); DKMS rebuilds "
            f"it at kernel updates and {MODULES_LOAD} loads it at boot"
        )
    return 0


def _same_source(ship: Shipped) -> bool:
    _, mismatch, errors = filecmp.cmpfiles(ship.path, ship.usr_src, SOURCE_FILES, shallow=False)
    return not mismatch and not errors


def _load_hint(proc: subprocess.CompletedProcess[str]) -> str:
    text = proc.stderr + proc.stdout
    if "Key was rejected" in text or "Required key not available" in text:
        return " (Secure Boot or lockdown: enroll DKMS's key with mokutil --import /var/lib/dkms/mok.pub and reboot)"
    if "Operation not permitted" in text:
        return " (module loading is disabled: kernel.modules_disabled, lockdown or nomodule)"
    return " (dmesg says more)"


def remove() -> int:
    need_root("remove")
    release = platform.release()
    done: list[str] = []
    if KMOD_SYSFS.is_dir():
        proc = subprocess.run(["modprobe", "-r", KMOD_NAME], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 and KMOD_SYSFS.is_dir():
            proc = subprocess.run(["rmmod", KMOD_NAME], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if KMOD_SYSFS.is_dir():
            raise ModuleError(f"could not unload {KMOD_NAME} from kernel {release}: {_last_line(proc)}")
        done.append("unloaded")
    dkms = shutil.which("dkms")
    versions: set[str] = set()
    if dkms is not None:
        versions = {version for version, _ in dkms_states(dkms)}
        for version in sorted(versions):
            proc = _dkms(dkms, "remove", "-m", KMOD_NAME, "-v", version, "--all")
            if proc.returncode != 0:
                raise ModuleError(f"dkms remove {KMOD_NAME}/{version} failed: {_last_line(proc)}")
            done.append(f"dkms remove {KMOD_NAME}/{version}")
    try:
        versions.add(shipped().version)
    except ModuleError:
        pass
    for version in sorted(versions):
        src = USR_SRC / f"{KMOD_NAME}-{version}"
        if src.is_dir():
            shutil.rmtree(src)
            done.append(f"removed {src}")
    if MODULES_LOAD.exists():
        MODULES_LOAD.unlink()
        done.append(f"removed {MODULES_LOAD}")
    if done:
        say(f"proctop: {KMOD_NAME} removed ({'; '.join(done)})")
    else:
        say(f"proctop: {KMOD_NAME} is not installed: nothing to do")
    return 0


def status() -> int:
    """One line per fact; 0 when the module is loaded, 1 when not, 3 when this kernel cannot load it."""
    release = platform.release()
    try:
        ship: Shipped | None = shipped()
    except ModuleError as exc:
        ship = None
        say(f"source: {exc}")
    if ship is not None:
        say(f"source: {ship.path} ({ship.ref})")
    dkms = shutil.which("dkms")
    if dkms is None:
        say("dkms: not installed (apt install dkms)")
    else:
        states = dkms_states(dkms)
        here = [f"{v} {state}" + (f" for {k}" if k else "") for (v, k), state in sorted(states.items())]
        say(f"dkms: {', '.join(here) if here else 'not added'}")
    loaded = KMOD_SYSFS.is_dir()
    if not PROC_MODULES.exists():
        say(f"loaded: no (kernel {release} cannot load modules: no {PROC_MODULES})")
    else:
        say(f"loaded: {'yes' if loaded else 'no'} (kernel {release})")
    say(f"at boot: {MODULES_LOAD if MODULES_LOAD.exists() else 'no'}")
    if not PROC_MODULES.exists():
        return EXIT_CANNOT
    return 0 if loaded else 1
