"""DataLoader workers that survive a stop signal sent to the whole process group (pipeline/stop_signals.py),
and are shut down by the main process itself."""

from gpt2zh.stop_signals import obey_only_the_parent


class ParentStopsWorker:
    """A worker_init_fn (picklable, for spawned workers too); it runs the Trainer's own one after it."""

    def __init__(self, then):
        self.then = then

    def __call__(self, worker_id: int) -> None:
        obey_only_the_parent()
        if self.then is not None:
            self.then(worker_id)


def workers_obey_only_the_parent(loader):
    """The loader, its future workers set up as above (accelerate's DataLoaderShard wraps the real one)."""
    torch_loader = getattr(loader, "base_dataloader", loader)
    if torch_loader.num_workers and not isinstance(torch_loader.worker_init_fn, ParentStopsWorker):
        torch_loader.worker_init_fn = ParentStopsWorker(torch_loader.worker_init_fn)
    return loader


def shut_down_workers(loaders) -> None:
    """Stop persistent workers now, through the loader's own shutdown (a message, not a signal); left to
    interpreter exit, multiprocessing would terminate them while torch still watches them."""
    for loader in loaders:
        torch_loader = getattr(loader, "base_dataloader", loader)
        iterator = getattr(torch_loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        torch_loader._iterator = None
