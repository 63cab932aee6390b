"""The store on its own: race-free job creation, atomic writes, clean names, crash leftovers swept."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.errors import Conflict, NotFound, TeachboxError
from app.engine.params import TrainParams
from app.service.files import write_atomic
from app.service.store import Store
from app.service.uploads import clean_filename, prepare_image
from tests.concurrently import at_once
from tests.web.api_helpers import BLUE, RED, image_bytes


def trainable_project(store: Store) -> str:
    project = store.create_project("demo")
    for name, colour in (("red", RED), ("blue", BLUE)):
        image_class = store.create_class(project.id, name)
        for i in range(3):
            store.add_image(
                image_class, f"{i}.jpg", prepare_image(image_bytes(colour, seed=i), 10_000_000)
            )
    return project.id


def test_concurrent_job_creation_admits_exactly_one(store: Store) -> None:
    pid = trainable_project(store)
    outcomes = at_once([lambda: store.create_job(pid, TrainParams())] * 8)
    errors = [o for o in outcomes if isinstance(o, TeachboxError)]
    jobs = [o for o in outcomes if not isinstance(o, TeachboxError)]
    assert len(jobs) == 1 and len(errors) == 7
    assert all(isinstance(e, Conflict) and jobs[0].id in e.message for e in errors)
    assert [job.id for job in store.list_jobs(pid)] == [jobs[0].id]  # type: ignore[attr-defined]


def test_job_snapshot_keeps_the_images_it_was_given(store: Store) -> None:
    pid = trainable_project(store)
    job = store.create_job(pid, TrainParams())
    red = store.list_classes(pid)[0]
    store.add_image(red, "late.jpg", prepare_image(image_bytes(RED, seed=50), 10_000_000))
    items = store.job_items(job)
    assert len(items) == 6 == job.image_count
    assert all(path.is_file() for path, _ in items)
    assert sorted({name for _, name in items}) == ["blue", "red"]


def test_write_atomic_replaces_whole_files_and_leaves_no_partials(tmp_path: Path) -> None:
    target = tmp_path / "a" / "file.bin"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../x.jpg", "x.jpg"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("a\x00b.jpg", "ab.jpg"),
        ("\u202egnp.exe", "gnp.exe"),
        ("", "image"),
        (None, "image"),
        ("..", ".."),
        ("x" * 300, "x" * 200),
    ],
)
def test_clean_filename(raw: str | None, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_sweep_removes_partials_and_unreferenced_files(store: Store) -> None:
    pid = trainable_project(store)
    image = store.list_images(pid)[0]
    folder = store.image_path(image).parent
    (folder / ".x.jpg.1234.partial").write_bytes(b"half")
    (folder / ("f" * 32 + ".jpg")).write_bytes(b"orphan")
    store.sweep()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        i.stored_name for i in store.list_images(pid)
    )


def test_an_image_for_a_class_deleted_meanwhile_is_refused_and_cleaned_up(store: Store) -> None:
    project = store.create_project("demo")
    image_class = store.create_class(project.id, "gone")
    store.delete_class(image_class)
    with pytest.raises(NotFound):
        store.add_image(image_class, "a.jpg", prepare_image(image_bytes(), 10_000_000))
    assert [p for p in store.project_dir(project.id).rglob("*") if p.is_file()] == []
