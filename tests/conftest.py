"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real annotation files of the project's shared folder (../shared/fixtures beside the repo).
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("real fixtures not found at ../shared/fixtures (only present in the project's workspace)")
    return SHARED_FIXTURES


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own stream cache, so tests never see each other's (or a user's) cache."""
    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    # Nothing may reach a model hub during tests.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads
    stall on each other: one thread keeps test times steady. Imported lazily: most tests need no torch."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def call_with_timeout(fn, *args, seconds: float = 20.0, **kwargs):
    """fn(*args, **kwargs), run in a daemon thread; the test fails, instead of hanging, when it does not
    return within `seconds`. The result is returned and an exception re-raised as if called directly."""
    import threading

    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds:g} s: it hangs")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture
def no_hang():
    """`no_hang(fn, *args, seconds=20, **kw)`: call fn, failing the test if it hangs (bad inputs that used to
    loop forever are guarded by this)."""
    return call_with_timeout
