"""``--metrics``, the alert rules and the service unit, checked by the real tools:
a Prometheus server scraping proctop, ``promtool`` and ``systemd-analyze``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO, need_tool, proctop_cmd
from prometheus_client import generate_latest

from proctop.cli.main import build_parser, make_source
from proctop.kernel.protocol import PROC_EVENT_ALL
from proctop.model.events import Event
from proctop.model.kinds import DEFAULT_MASK
from proctop.sinks.metrics import OTHER, Metrics, MetricsError, parse_address
from proctop.sinks.ui.app import ProctopApp
from proctop.sources.replay import load_capture

NEUTRAL = "/"
CONTRIB = REPO / "contrib"
RULES = CONTRIB / "prometheus" / "proctop-alerts.yml"
SCRAPE = CONTRIB / "prometheus" / "scrape-proctop.yml"
UNIT = CONTRIB / "systemd" / "proctop.service"
SAMPLE = REPO / "tests" / "data" / "sample.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def wait_for(predicate, timeout: float = 30.0, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(step)
    return predicate()


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([need_tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60)


def failure(comm: str | None, code: int | None = 1, sig: str | None = None, ts: float = 1.0) -> Event:
    return Event(ts=ts, event="exit", pid=1, tgid=1, comm=comm, exit_code=code, signal=sig)


# --- the counters ---------------------------------------------------------------


def test_counts_by_kind_failures_and_lost():
    m = Metrics()
    m([failure("crashy", 3), failure("crashy", 3), failure("segv", None, "SIGSEGV"), failure(None, 2)])
    m([Event(ts=1, event="exit", pid=2, tgid=2, comm="fine", exit_code=0), Event(ts=1, event="lost", count=40)])
    m([Event(ts=1, event="exec", pid=3, tgid=3, comm="x", cmdline=["/usr/bin/thing", "-v"])])
    value = m.registry.get_sample_value
    assert value("proctop_events_total", {"kind": "exit"}) == 5
    assert value("proctop_events_total", {"kind": "exec"}) == 1
    assert value("proctop_events_total", {"kind": "coredump"}) == 0  # every kind is there from the start
    assert value("proctop_events_total", {"kind": "lost"}) == 1
    assert value("proctop_lost_events_total") == 40
    assert value("proctop_failures_total", {"command": "crashy", "status": "3", "unit": ""}) == 2
    assert value("proctop_failures_total", {"command": "segv", "status": "SIGSEGV", "unit": ""}) == 1
    assert value("proctop_failures_total", {"command": "unknown", "status": "2", "unit": ""}) == 1
    assert value("proctop_failures_total", {"command": "fine", "status": "0", "unit": ""}) is None


def test_failure_series_are_bounded_and_recent_commands_keep_theirs():
    clock = [0.0]
    m = Metrics(max_series=3, idle=60, clock=lambda: clock[0])
    for name in ("a", "b", "c"):
        m([failure(name)])
    m([failure("d")])  # every series moved within the minute: d is "other"
    value = m.registry.get_sample_value
    assert value("proctop_failures_total", {"command": OTHER, "status": OTHER, "unit": ""}) == 1
    assert value("proctop_failures_total", {"command": "d", "status": "1", "unit": ""}) is None
    clock[0] = 30
    m([failure("b"), failure("c")])
    clock[0] = 100  # a has been quiet for 100 s: d takes its place
    m([failure("d")])
    assert value("proctop_failures_total", {"command": "a", "status": "1", "unit": ""}) is None
    assert value("proctop_failures_total", {"command": "d", "status": "1", "unit": ""}) == 1
    for i in range(1000):  # a flood of names cannot grow the scrape
        m([failure(f"n{i}")])
    series = [line for line in generate_latest(m.registry).decode().splitlines() if line.startswith("proctop_failures")]
    assert len(series) <= 3 + 1


def test_hostile_names_make_valid_labels():
    m = Metrics()
    m.describe_source({"source": "native", "kernel": "6.18.0"})
    m([failure('evil"\n\\name\udcff\x1b[31m'), failure("ok")])
    text = generate_latest(m.registry).decode()
    shown = 'evil"\\x0a\\\\name\\udcff\\x1b[31m'  # control and undecodable characters spelled out, \\ doubled
    assert m.registry.get_sample_value("proctop_failures_total", {"command": shown, "status": "1", "unit": ""}) == 1
    check = promtool("check", "metrics", stdin=text)
    assert check.returncode == 0, check.stdout + check.stderr


def test_addresses():
    assert parse_address("127.0.0.1:9785") == ("127.0.0.1", 9785)
    assert parse_address("[::1]:9785") == ("::1", 9785)
    assert parse_address(":9785") == ("0.0.0.0", 9785)
    for bad in ("9785", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "no-such-host.invalid:9785"):
        with pytest.raises(MetricsError):
            parse_address(bad)


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("nonsense", "not ADDR:PORT"),
        ("127.0.0.1:99999", "not ADDR:PORT"),
        ("no-such-host.invalid:9785", "cannot resolve"),
        ("192.0.2.1:9785", "cannot listen on 192.0.2.1:9785"),  # not an address of this machine
    ],
)
def test_bad_metrics_address_is_one_line_and_exit_2(address, needle):
    proc = subprocess.run(
        proctop_cmd("--replay", str(SAMPLE), "--json", "--metrics", address),
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("proctop: ") and needle in proc.stderr
    assert proc.stdout == ""


def test_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            proctop_cmd("--replay", str(SAMPLE), "--json", "--metrics", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            cwd=NEUTRAL,
            timeout=30,
        )
    assert proc.returncode == 2
    assert proc.stderr == f"proctop: --metrics: cannot listen on 127.0.0.1:{port}: Address already in use\n"


async def test_the_ui_counts_what_it_shows():
    """The UI path: the reader thread's polls feed the counters; the endpoint serves them."""
    port = free_port()
    args = build_parser().parse_args(["--replay", str(SAMPLE), "--only", "all", "--metrics", f"127.0.0.1:{port}"])
    source = make_source(args, PROC_EVENT_ALL)
    _header, expected = load_capture(SAMPLE)
    app = ProctopApp(source, history=1000)
    source.start()
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(100):
                await pilot.pause(0.05)
                if app.reader_done:
                    break
            assert app.events_seen == len(expected)
            text = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        source.close()
    exits = sum(1 for ev in expected if ev.event == "exit")
    assert f'proctop_events_total{{kind="exit"}} {float(exits)}' in text
    assert "proctop_failures_total" in text and 'source="replay"' in text
    with pytest.raises(OSError):  # closing the source stopped the server
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)


# --- a real Prometheus scraping a real proctop -----------------------------------------


@pytest.fixture
def crashy(tmp_path) -> Path:
    """A script whose process name is unique to this run: it lives 0.2 s (long enough to be named), then fails."""
    path = tmp_path / f"ptcrash{secrets.token_hex(3)}"
    path.write_text('#!/bin/sh\nsleep 0.2\n[ "$1" = term ] && kill -TERM $$\nexit 3\n')
    path.chmod(0o755)
    return path


@pytest.mark.kernel
def test_prometheus_scrapes_the_failures_of_a_command(tmp_path, crashy):
    metrics_port, prom_port = free_port(), free_port()
    proctop = subprocess.Popen(
        proctop_cmd("--record", str(tmp_path / "rec"), "--metrics", f"127.0.0.1:{metrics_port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )
    prometheus = None
    try:
        endpoint = f"http://127.0.0.1:{metrics_port}/metrics"
        assert wait_for(lambda: http_get(endpoint)), proctop.stderr
        config = SCRAPE.read_text()
        config = config.replace('["host1.example.com:9785", "host2.example.com:9785"]', f'["127.0.0.1:{metrics_port}"]')
        config = config.replace("scrape_interval: 30s", "scrape_interval: 1s").replace("/etc/prometheus/rules/", "")
        assert f"127.0.0.1:{metrics_port}" in config and "1s" in config
        (tmp_path / "prometheus.yml").write_text(config)
        shutil.copy(RULES, tmp_path / RULES.name)
        check = promtool("check", "config", str(tmp_path / "prometheus.yml"))
        assert check.returncode == 0, check.stdout + check.stderr
        prometheus = subprocess.Popen(
            [
                need_tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        api = f"http://127.0.0.1:{prom_port}"
        assert wait_for(lambda: "Ready" in http_get(f"{api}/-/ready")), "Prometheus did not start"

        def query(expr: str) -> dict[str, float]:
            url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            result = json.loads(http_get(url))["data"]["result"]
            return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}

        assert wait_for(lambda: query('up{job="proctop"} == 1'))  # scraped at least once, before the failures
        for _ in range(4):
            subprocess.run([str(crashy)], check=False)
        subprocess.run([str(crashy), "term"], check=False)
        by_status = f'sum by (status) (proctop_failures_total{{command="{crashy.name}"}})'
        want = {"3": 4.0, "SIGTERM": 1.0}

        def counted() -> dict[str, float]:
            return {json.loads(k)["status"]: v for k, v in query(by_status).items()}

        wait_for(lambda: counted() == want)
        assert counted() == want
        info = query("proctop_info")
        assert [json.loads(k)["source"] for k in info] == ["native"]
        text = http_get(endpoint)
        check = promtool("check", "metrics", stdin=text)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "proctop_events_total" in text and "process_cpu_seconds_total" in text
        rules = json.loads(http_get(f"{api}/api/v1/rules"))["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} == {
            "ProcessCrashLoop",
            "ProctopLostEvents",
            "ProctopDown",
        }
    finally:
        for proc in (prometheus, proctop):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert proctop.returncode == 0, proctop.stderr.read()
    assert proctop.stdout.read() == ""


# --- the shipped files, checked by their own tools ------------------------------------------


def test_alert_rules_check_and_fire_as_intended():
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 rules found" in check.stdout
    unit_test = promtool("test", "rules", str(REPO / "tests" / "data" / "proctop-alerts-test.yml"))
    assert unit_test.returncode == 0, unit_test.stdout + unit_test.stderr


def installed_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this venv's proctop (verify wants an executable there)."""
    exe = Path(sys.executable).parent / "proctop"
    assert os.access(exe, os.X_OK)
    unit = tmp_path / "proctop.service"
    unit.write_text((text or UNIT.read_text()).replace("/opt/proctop/bin/proctop", str(exe)))
    return unit


def test_systemd_unit_verifies_and_is_confined(tmp_path):
    unit = installed_unit(tmp_path)
    analyze = need_tool("systemd-analyze")
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:]  # overall exposure at most 2.0 ("OK")
    text = UNIT.read_text()
    for line in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=proctop",
        "RestrictAddressFamilies=AF_NETLINK AF_UNIX AF_INET AF_INET6",
    ):
        assert f"\n{line}\n" in text
    assert "--record %S/proctop" in text and "--metrics 0.0.0.0:9785" in text
    broken = installed_unit(tmp_path, text.replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    analyze = need_tool("systemd-analyze")
    verify = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "stricter" in verify.stderr  # the check above can fail


def test_service_arguments_parse():
    """The unit's ExecStart options are ones this proctop accepts."""
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    argv = line.split()[1:]
    args = build_parser().parse_args([a.replace("%S", "/var/lib") for a in argv])
    assert args.record == "/var/lib/proctop" and args.metrics == "0.0.0.0:9785"
    assert args.record_max_size == 100 * 1024**2 and args.record_max_age == 30 * 86400


def test_modules_load_file_names_the_kmod():
    names = [
        line.strip()
        for line in (CONTRIB / "modules-load.d" / "proctop_cn.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert names == ["proctop_cn"]
    assert "proctop_cn.o" in (REPO / "kmod" / "Kbuild").read_text()


@pytest.mark.kernel
def test_json_and_metrics_together(crashy):
    port = free_port()
    proc = subprocess.Popen(
        proctop_cmd("--json", "--only", "exec,nonzero-exit", "--metrics", f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL,
    )
    try:
        assert json.loads(proc.stdout.readline())["source"] == "native"
        child = subprocess.Popen([str(crashy)])
        child.wait()
        while True:  # the JSON stream shows it...
            ev = json.loads(proc.stdout.readline())
            if ev["pid"] == child.pid and ev["event"] == "exit":
                break
        text = http_get(f"http://127.0.0.1:{port}/metrics")  # ...and the counter already has it
        line = f'proctop_failures_total{{command="{crashy.name}",status="3",unit=""}} 1.0'
        assert line in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def _as_the_service_user(rec: str, port: int, crashy: str) -> dict:
    """In a child at uid 65534 (what DynamicUser= gives): record and serve a real failure."""
    args = build_parser().parse_args(["--record", rec, "--metrics", f"127.0.0.1:{port}"])  # the unit's mask
    source = make_source(args, DEFAULT_MASK)
    source.start()
    try:
        source.poll(0.1)  # the first poll writes the segment's header
        child = subprocess.Popen([crashy])
        child.wait()
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (child.pid, "exit") not in [(ev.pid, ev.event) for ev in seen]:
            seen.extend(source.poll(0.1))
        text = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        source.close()
    return {"uid": os.getuid(), "kind": source.kind, "pid": child.pid, "metrics": text}


@pytest.mark.nonroot
@pytest.mark.kernel
def test_an_unprivileged_recorder_records_and_serves(nonroot_child):
    top = Path(tempfile.mkdtemp(prefix="proctop-service-"))  # pytest's tmp_path is closed to other users
    try:
        os.chmod(top, 0o755)
        crashy = top / f"ptcrash{secrets.token_hex(3)}"
        crashy.write_text("#!/bin/sh\nsleep 0.2\nexit 3\n")
        crashy.chmod(0o755)
        rec = top / "rec"
        rec.mkdir()
        os.chown(rec, 65534, 65534)  # the StateDirectory= systemd makes for the dynamic user
        port = free_port()
        result = nonroot_child(lambda: _as_the_service_user(str(rec), port, str(crashy)))
        assert (result["uid"], result["kind"]) == (65534, "native")
        assert f'proctop_failures_total{{command="{crashy.name}",status="3",unit=""}} 1.0' in result["metrics"]
        _header, recorded = load_capture(rec)
        mine = [(ev.event, ev.exit_code) for ev in recorded if ev.pid == result["pid"]]
        assert ("exit", 3) in mine
        assert {p.stat().st_uid for p in rec.iterdir()} == {65534}
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\u202e", "\\u202e"),  # was \\x202e: the same text as "\\x20" followed by "2e"
        ("\\x202e", "\\\\x202e"),  # a backslash typed is doubled, so no escape is ambiguous
        ("a\x1bb", "a\\x1bb"),
        ("\U000e0001x", "\\U000e0001x"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_label_escapes_are_unambiguous(name, shown):
    from proctop.sinks.metrics import label

    assert label(name) == shown


def test_the_server_bounds_its_threads_and_times_out_idle_connections(monkeypatch):
    """1,000 half-open connections were 1,000 threads and a scrape waited ~20 s; a backlog of 5
    failed requests at 100 concurrent clients."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from proctop.sinks import metrics as metrics_mod

    monkeypatch.setattr(metrics_mod, "CONNECTION_TIMEOUT", 1.0)
    m = Metrics()
    m.serve("127.0.0.1", 0)
    port = m.server.server_address[1]
    url = f"http://127.0.0.1:{port}/metrics"
    base = threading.active_count()
    idle = []
    try:
        assert m.server.request_queue_size >= 128
        for _ in range(300):  # connected, never a byte sent
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        assert threading.active_count() <= base + metrics_mod.MAX_CONNECTIONS + 2
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert b"proctop_events_total" in reply.read()
        assert time.monotonic() - started < 15  # the idle ones time out, a slot frees, the scrape is served
    finally:
        for conn in idle:
            conn.close()

    def scrape(_: int) -> bool:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status == 200

    try:
        with ThreadPoolExecutor(100) as pool:
            assert all(pool.map(scrape, range(500)))
    finally:
        m.close()
