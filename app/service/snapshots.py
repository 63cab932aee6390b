"""A project's images as they are now, split as a job with the given parameters would split them."""

from __future__ import annotations

from app.engine.dataset import Dataset, stratified_split
from app.engine.errors import InvalidInput
from app.engine.params import TrainParams
from app.service.records import Project
from app.service.store import Store


def current_dataset(store: Store, project: Project, params: TrainParams) -> Dataset:
    """The project's images as they are now, split as a job with these parameters would split them."""
    labels = [image_class.name for image_class in store.list_classes(project.id)]
    names = {image_class.id: image_class.name for image_class in store.list_classes(project.id)}
    images = store.list_images(project.id)
    if not images:
        raise InvalidInput(
            "This project has no images yet. Add images to its classes, then check its data health."
        )
    index = {name: i for i, name in enumerate(labels)}
    items = [
        (store.image_path(image), index[names[image.class_id]])
        for image in images
        if image.class_id in names
    ]
    keys = store.content_keys(project.id)
    train, val = stratified_split(items, params.val_split, params.seed, key=keys.__getitem__)
    return Dataset(labels, train, val)
