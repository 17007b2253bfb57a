from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vwindow.errors import NotFoundError, StorageError, ValidationError
from vwindow.store import FileStore


async def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.start()
    data = b"page one" * 1000
    digest = await store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert await store.put(data) == digest
    assert await store.get(digest) == data
    assert await store.verify(digest)
    assert store.path_for(digest).read_bytes() == data


async def test_leftover_temp_files_are_cleared_on_start(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "put-abc").write_bytes(b"half a file")
    store = FileStore(tmp_path)
    await store.start()
    assert not list((tmp_path / "tmp").iterdir())


async def test_bad_names_and_missing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.start()
    with pytest.raises(ValidationError):
        store.path_for("../../etc/passwd")
    with pytest.raises(NotFoundError):
        await store.get("0" * 64)


async def test_tampered_file_fails_verify(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.start()
    digest = await store.put(b"original")
    store.path_for(digest).write_bytes(b"changed")
    assert not await store.verify(digest)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
async def test_unwritable_store_gives_storage_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.start()
    (tmp_path / "tmp").chmod(0o500)
    try:
        with pytest.raises(StorageError, match="could not store"):
            await store.put(b"x")
    finally:
        (tmp_path / "tmp").chmod(0o700)


async def test_put_file_streams_into_the_same_name(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    await store.start()
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * 20000  # 5 MB, read in chunks
    src.write_bytes(data)
    digest, size = await store.put_file(src)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert await store.get(digest) == data
    assert digest == await store.put(data)
