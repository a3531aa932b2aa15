"""The plugin manager: builtins, entry points, broken plugins, selection by config."""

from __future__ import annotations

import inspect
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cpv_core import ConfigError, ModelsCheckpointsManage, hookspecs
from cpv_core.config import CPVConfig
from cpv_core.plugins import BUILTIN_PLUGINS, PluginLoadWarning, Plugins, get_plugin_manager, reset_plugin_manager

from .helpers import write_model

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_are_registered_and_declared_as_entry_points():
    names = {name for name, _ in get_plugin_manager().list_name_plugin()}
    assert set(BUILTIN_PLUGINS) <= names
    declared = {ep.name: ep.value for ep in metadata.entry_points(group="cpv")}
    for name, module in BUILTIN_PLUGINS.items():
        assert declared.get(name) == module, f"builtin {name} is not declared in the 'cpv' entry-point group"


def test_backends_are_offered_by_name():
    hook = get_plugin_manager().hook

    def names(results):
        return {info.name for result in results for info in result}

    assert {"local", "dvc-s3"} <= names(hook.cpv_storage_backends())
    assert {"local", "bitbucket-ssh"} <= names(hook.cpv_hosting_backends())
    assert {"git-tags"} <= names(hook.cpv_versioning_backends())
    assert {"aws", "bitbucket-ssh"} <= names(hook.cpv_credential_providers())
    p = Plugins()  # the typed facade sees the same
    assert {b.name for b in p.storage_backends()} == names(hook.cpv_storage_backends())


def test_unknown_backend_lists_the_choices(cpv_home):
    CPVConfig().set_config("storage", "nope")
    m = ModelsCheckpointsManage("T", "m")
    with pytest.raises(ConfigError) as err:
        m.import_model_init()
    assert "'nope'" in err.value.message and "local" in err.value.message
    assert not (cpv_home / "workspaces" / "T").exists()


def register_storage_plugin(plugin: str, backend: str, factory, *, select: bool) -> None:
    """Register a plugin module ``plugin`` offering storage backend ``backend`` (and select it)."""
    import types

    from cpv_core import hookimpl
    from cpv_core.backends import StorageBackendInfo

    module = types.ModuleType(plugin)
    module.cpv_storage_backends = hookimpl(lambda: [StorageBackendInfo(backend, factory, f"test backend {backend}")])
    get_plugin_manager().register(module, name=plugin)
    if select:
        CPVConfig().set_config("storage", backend)


def test_two_plugins_offering_one_backend_name_is_an_error_naming_both(cpv_home):
    from cpv_plugins.local import LocalStorage

    register_storage_plugin("impostor", "local", LocalStorage, select=False)
    m = ModelsCheckpointsManage("T", "m")
    with pytest.raises(ConfigError) as err:
        m.import_model_init()
    assert "offered by more than one plugin (impostor and local)" in err.value.message
    assert not (cpv_home / "workspaces" / "T").exists()


def test_a_backend_missing_a_method_fails_at_selection_naming_its_plugin(cpv_home):
    from cpv_plugins.local import LocalStorage

    class Incomplete(LocalStorage):
        materialize = None  # type: ignore[assignment]

    register_storage_plugin("partial", "partial", Incomplete, select=True)
    with pytest.raises(ConfigError) as err:
        ModelsCheckpointsManage("T", "m").import_model_init()
    assert "plugin 'partial' lacks materialize" in err.value.message
    assert not (cpv_home / "workspaces" / "T").exists()


class _FakeEntryPoint:
    def __init__(self, name, value, loader):
        self.name, self.value, self.version, self._loader = name, value, None, loader

    def load(self):
        return self._loader()


def _with_entry_points(monkeypatch, eps):
    from cpv_core import entry_points

    def fake(group):
        return entry_points.find(group) + (eps if group == "cpv" else [])

    monkeypatch.setattr("cpv_core.plugins.find_entry_points", fake)
    reset_plugin_manager()


@pytest.mark.parametrize("group", ["cpv", "console_scripts", "pytest11"])
def test_the_entry_point_scan_agrees_with_importlib_metadata(group):
    """cpv reads entry_points.txt itself (importlib.metadata costs ~45 ms of start-up);
    it must find exactly what importlib.metadata finds."""
    from cpv_core.entry_points import find

    assert sorted((e.name, e.value) for e in find(group)) == sorted((e.name, e.value) for e in metadata.entry_points(group=group))


def test_an_entry_point_loads_its_attribute_and_knows_its_distribution_s_version(tmp_path):
    from cpv_core.entry_points import find

    dist = tmp_path / "Some.Plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: Some.Plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[other]\nx = nope:nothing\n\n[cpv]\n# a comment\nsome = os.path:join [extra]\nmod = json\n")
    shadowed = tmp_path / "later"
    (shadowed / "some_plugin-9.0.dist-info").mkdir(parents=True)
    (shadowed / "some_plugin-9.0.dist-info" / "entry_points.txt").write_text("[cpv]\nshadowed = json\n")
    found = find("cpv", [str(tmp_path), str(shadowed), str(tmp_path / "missing")])
    assert [(e.name, e.value) for e in found] == [("some", "os.path:join [extra]"), ("mod", "json")]  # the first of a name wins
    import json
    import os.path

    assert found[0].load() is os.path.join and found[1].load() is json
    assert found[0].version == "1.2.3"


def test_a_broken_plugin_warns_and_the_rest_works(monkeypatch):
    def boom():
        raise ImportError("No module named 'torch_magic'")

    _with_entry_points(monkeypatch, [_FakeEntryPoint("broken", "broken_plugin:main", boom)])
    with pytest.warns(PluginLoadWarning, match="broken"):
        pm = get_plugin_manager()
    assert pm.get_plugin("broken") is None
    assert pm.get_plugin("local") is not None


def test_disable_plugins_env_loads_builtins_only(monkeypatch):
    loaded = []
    _with_entry_points(monkeypatch, [_FakeEntryPoint("extra", "extra:x", lambda: loaded.append(1) or object())])
    monkeypatch.setenv("CPV_DISABLE_PLUGINS", "1")
    reset_plugin_manager()
    pm = get_plugin_manager()
    assert not loaded and pm.get_plugin("extra") is None
    assert pm.get_plugin("local") is not None
    monkeypatch.setenv("CPV_DISABLE_PLUGINS", "extra")
    reset_plugin_manager()
    assert get_plugin_manager().get_plugin("extra") is None and not loaded


def select_dirstore(root: Path) -> None:
    """Configure the example plugin's backend for new models (config only)."""
    cfg = CPVConfig()
    cfg.set_config("storage", "dirstore")
    cfg.set_config("dirstore.root", str(root))


def test_a_plugin_registered_in_a_test_replaces_the_storage_backend(cpv_home, monkeypatch, tmp_path):
    """The design card's promise: swap storage by configuration; the manager is unchanged."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "cpv-dirstore"))
    import cpv_dirstore

    pm = get_plugin_manager()
    if pm.get_plugin("dirstore") is None:
        pm.register(cpv_dirstore, name="dirstore")
    select_dirstore(tmp_path / "objects")
    m = ModelsCheckpointsManage("T", "m")
    m.import_model_init()
    data = write_model(m.repo_path / "model.bin", 2048)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    assert m.tag_model_checkpoint() == "v0.1"
    # the example is a transport on the DVC-format engine (issue 29): DVC's own pointer,
    # and the remote the workspace names is the dirstore's, not the local default's
    assert (m.repo_path / "model.bin.dvc").exists()
    assert str(tmp_path / "objects") in (m.repo_path / ".dvc" / "config.local").read_text()
    objects = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 1 and objects[0].read_bytes() == data
    art = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "dl")
    assert Path(art.model_path).read_bytes() == data


def test_describe_lists_plugins_with_hooks():
    infos = {i.name: i for i in Plugins().describe()}
    assert "cpv_storage_backends" in infos["local"].hooks
    assert infos["local"].builtin and infos["local"].version


def test_every_hookspec_is_documented_and_tested():
    """As datasette does: a new hook fails this test until its docstring has an
    example and a parameter/return description, and another test names it."""
    tests_text = "\n".join(_test_sources(exclude="test_every_hookspec_is_documented_and_tested"))
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("cpv_")]
    assert len(specs) >= 5
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Example" in doc and (":return:" in doc or ":param" in doc), f"hook {name} lacks documentation"
        assert name in tests_text, f"hook {name} has no test"


def test_every_protocol_method_is_documented_and_called_by_the_core():
    """The protocols hold only what cpv calls: each method has a docstring, is in the
    hooks reference, and is called somewhere in cpv_core (outside the modules that define it)."""
    import ast

    import cpv_core
    from cpv_core import backends

    core = Path(cpv_core.__file__).parent
    called = set()
    for path in core.rglob("*.py"):
        if path.name in {"protocols.py", "bases.py", "testing.py"}:
            continue
        called |= {n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)}
    reference = (core.parent / "docs" / "hooks-reference.md").read_text()
    protocols = [backends.StorageBackend, backends.VersioningBackend, backends.HostingBackend, backends.CredentialProvider]
    for protocol in protocols:
        methods = [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
        assert methods, protocol
        for name in methods:
            assert inspect.getdoc(getattr(protocol, name)), f"{protocol.__name__}.{name} has no docstring"
            assert name in called, f"{protocol.__name__}.{name} is never called by cpv_core: drop it from the protocol"
            assert f"{protocol.__name__}.{name}" in reference or f"`{name}" in reference, f"{protocol.__name__}.{name} not in the reference"


def test_a_backend_leaving_a_base_class_method_abstract_fails_at_selection(cpv_home):
    from cpv_core.bases import StorageBackendBase

    class Forgetful(StorageBackendBase):
        name = "forgetful"

        def pointer_path(self, path):
            return f"{path}.ptr"

    register_storage_plugin("forgetful", "forgetful", Forgetful, select=True)
    with pytest.raises(ConfigError) as err:
        ModelsCheckpointsManage("T", "m").import_model_init()
    assert "plugin 'forgetful' lacks describe_pointer, manifest, materialize, push, status, track" in err.value.message
    assert not (cpv_home / "workspaces" / "T").exists()


def _test_sources(exclude: str) -> list[str]:
    """The source of every test function of the suite (parsed, not sliced), but ``exclude``."""
    import ast

    sources = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name != exclude:
                sources.append(ast.get_source_segment(text, node) or "")
    return sources


def test_importing_the_cli_does_not_import_heavy_libraries():
    code = "import sys, cpv_core.cli; print(' '.join(m for m in ('dvc','boto3','botocore','s3fs','git') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_installed_third_party_plugin_runs_the_workflow_through_its_entry_point(cpv_home, tmp_path):
    """examples/cpv-dirstore installed as a package (as .ci/run does): found by its
    entry point alone, selected by config; the manager classes are unchanged."""
    names = {ep.name for ep in metadata.entry_points(group="cpv")}
    if "dirstore" not in names:
        pytest.skip("examples/cpv-dirstore is not installed (bash .ci/run installs it)")
    assert get_plugin_manager().get_plugin("dirstore") is not None
    result = subprocess.run([sys.executable, "-m", "cpv_core.cli", "plugins", "--json"], capture_output=True, text=True, check=True)
    assert any(p["name"] == "dirstore" and not p["builtin"] for p in __import__("json").loads(result.stdout))
    select_dirstore(tmp_path / "objects")
    m = ModelsCheckpointsManage("T", "through-entry-point")
    m.import_model_init()
    data = write_model(m.repo_path / "model.bin", 3000)
    m.upload_model_checkpoint(metrics={"loss": 0.1})
    assert m.tag_model_checkpoint() == "v0.1"
    other = ModelsCheckpointsManage("T", "through-entry-point", repo_path=tmp_path / "b")
    other.import_model_init()
    assert Path(other.download_model_checkpoint("v0.1", output_dir=tmp_path / "dl").model_path).read_bytes() == data


def test_seed_names_import_from_cpv_core_and_the_seed_module():
    import cpv_core
    from cpv_core.checkpoints import CombinedCheckpointsManage, DataCheckpointsManage, ModelsCheckpointsManage

    for name in (
        "CPVConfig",
        "ModelsCheckpointsManage",
        "DataCheckpointsManage",
        "CombinedCheckpointsManage",
        "ModelArtifacts",
        "DataArtifacts",
        "CPVError",
        "ConfigError",
        "AWSError",
        "GitError",
        "DVCError",
        "CheckpointNotFoundError",
        "RepositoryError",
        "CredentialError",
    ):
        assert getattr(cpv_core, name) is not None, name
    assert cpv_core.CombinedCheckpointsManage is CombinedCheckpointsManage
    assert cpv_core.ModelsCheckpointsManage is ModelsCheckpointsManage and cpv_core.DataCheckpointsManage is DataCheckpointsManage


def test_a_backend_written_before_the_optional_methods_gets_their_defaults():
    """A third-party backend that implements only the required methods (not derived from
    the bases) is given the bases' defaults for the optional ones when it is selected;
    everything else, attribute writes included, is still the backend's own."""
    from cpv_core.backends import VersioningBackend
    from cpv_core.plugins import WithDefaults, with_defaults

    class Old:
        name = "old"

        def read_file(self, rev, path):
            return f"{rev}:{path}".encode()

    from cpv_core.bases import OPTIONAL_VERSIONING_METHODS

    required = [n for n, v in vars(VersioningBackend).items() if callable(v) and not n.startswith("_")]
    for name in set(required) - set(OPTIONAL_VERSIONING_METHODS) - {"read_file"}:
        setattr(Old, name, lambda self, *args, **kwargs: None)  # the required ones, as a stub
    old = Old()
    wrapped = with_defaults(old, VersioningBackend)
    assert isinstance(wrapped, WithDefaults)
    assert wrapped.read_files([("HEAD", "a"), ("v1", "b")]) == [b"HEAD:a", b"v1:b"]  # the default reaches the backend
    assert wrapped.gc_runs() == {} and wrapped.begin_gc() is None and wrapped.remote_branch_rev() is None
    wrapped.marker = 1
    assert old.marker == 1 and wrapped.name == "old"
    from cpv_plugins.git_tags import GitTagsVersioning

    assert not isinstance(with_defaults(GitTagsVersioning.__new__(GitTagsVersioning), VersioningBackend), WithDefaults)
