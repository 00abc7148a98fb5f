"""A school's network (site.yaml network:): what reaches pip, apt and docker, and student containers."""

import os
import subprocess
import sys
from pathlib import Path

from reconciler.config.load import load_site
from reconciler.config.site import Network
from reconciler.host.run import Runner
from reconciler.hub.spawner import SCHOOL_CA, student_network

ROOT = Path(__file__).resolve().parents[2]


def test_the_settings_mean_the_variables_tools_read():
    env = Network(
        proxy="http://proxy.school:3128",
        no_proxy=["localhost", ".school"],
        pip_index="http://mirror.school/simple",
        ca_bundle=Path("/etc/school-ca.pem"),
    ).environment()
    assert env["HTTPS_PROXY"] == env["https_proxy"] == env["HTTP_PROXY"] == "http://proxy.school:3128"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,.school"
    assert env["PIP_INDEX_URL"] == "http://mirror.school/simple" and env["PIP_TRUSTED_HOST"] == "mirror.school"
    assert env["PIP_CERT"] == env["REQUESTS_CA_BUNDLE"] == "/etc/school-ca.pem"
    assert "PIP_TRUSTED_HOST" not in Network(pip_index="https://mirror.school/simple").environment()
    assert Network().environment() == {}


def test_commands_get_the_network_variables_and_nothing_else(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    monkeypatch.setenv("SOME_SECRET", "never passed on")
    seen = Runner().run(["env"])
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in seen and "DOCKER_HOST=unix:///run/other.sock" in seen
    assert "SOME_SECRET" not in seen and "LC_ALL=C" in seen


def test_site_yaml_wins_over_the_environment_for_the_command(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("state_dir: state\nnetwork: {proxy: 'http://proxy.school:3128'}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from reconciler.cli.commands import site_of; "
            "import argparse; site_of(argparse.Namespace(site=sys.argv[1])); "
            "print(os.environ['HTTPS_PROXY'])",
            str(site),
        ],
        capture_output=True,
        text=True,
        env={"HTTPS_PROXY": "http://elsewhere:1", "PATH": "/usr/bin", "RECONCILE_CACHE": os.environ["RECONCILE_CACHE"]},
        cwd=ROOT,
    )
    assert done.stdout.strip() == "http://proxy.school:3128", done.stderr


def test_student_containers_get_them_only_when_the_site_says_so(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    site = tmp_path / "site.yaml"
    site.write_text("network: {proxy: 'http://proxy.school:3128', ca_bundle: ca.pem}\n")
    assert student_network(load_site(site)) == ({}, [])
    site.write_text("network: {proxy: 'http://proxy.school:3128', ca_bundle: ca.pem, to_student_containers: true}\n")
    env, mounts = student_network(load_site(site))
    assert env["HTTPS_PROXY"] == "http://proxy.school:3128" and env["PIP_CERT"] == SCHOOL_CA
    assert mounts == [{"type": "bind", "source": str(tmp_path / "ca.pem"), "target": SCHOOL_CA, "read_only": True}]
