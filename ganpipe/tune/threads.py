"""Idle cores go to the trials still running once the search has nothing left to start.

A sweep's last trials often run alone: ASHA lets one or two train to the end while the other
slots have no trial left to take (docs/benchmarks.md, core utilisation). Tune's own answer,
ResourceChangingScheduler, restarts a trial from its checkpoint in a new actor and cannot be
combined with `reuse_actors`. Torch can change its thread count in a running process, so here
the driver works out each running trial's share of the node's CPUs and a tiny actor holds it;
each trial asks after every evaluation and sets its torch threads for the next interval. Ray's
bookkeeping still says `resources.cpu` per trial, which is harmless only because nothing is left
to schedule: the shares fall back to `resources.cpu` the moment a trial is waiting (a retry, a
resumed sweep), and each trial follows at its next evaluation.

Only with the sweep's own in-process Ray, on one node: a cluster's idle CPUs may belong to
other jobs, and on several nodes they are rarely on the node of the trial that could use them.
More threads change a trial's floating point sums in the last bits, so
`resources.share_idle_cpus: false` keeps each trial's numbers independent of what else ran.
"""
from __future__ import annotations

import logging

import ray
import torch
from ray import tune
from ray.tune.experiment import Trial

from ganpipe.train.threads import set_threads

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ThreadShares:
    """trial id -> torch threads; a trial not listed keeps `resources.cpu` threads."""

    def __init__(self):
        self._threads: dict[str, int] = {}

    def update(self, threads: dict[str, int]) -> None:
        self._threads = threads

    def threads(self, trial_id: str) -> int | None:
        return self._threads.get(trial_id)


def actor_name(experiment: str) -> str:
    return f"ganpipe-threads-{experiment}"


def shares(trials: list[Trial], num_samples: int, node_cpus: int, base: int) -> dict[str, int]:
    """Threads per running trial: the node's CPUs split evenly once no trial waits and none is still to come."""
    running = sorted((t for t in trials if t.status == Trial.RUNNING), key=lambda t: t.trial_id)  # stable spare
    waiting = any(t.status in (Trial.PENDING, Trial.PAUSED) for t in trials) or len(trials) < num_samples
    if waiting or not running:
        return {}
    each, extra = divmod(node_cpus, len(running))
    found = {t.trial_id: max(base, each + (i < extra)) for i, t in enumerate(running)}
    return {k: v for k, v in found.items() if v > base}


class ShareIdleCpus(tune.Callback):
    """Driver side: recompute the shares at every step of Tune's loop and publish them when they change."""

    def __init__(self, experiment: str, num_samples: int, base_cpus: float):
        self.experiment, self.num_samples, self.base = experiment, num_samples, max(1, int(base_cpus))
        self._actor, self._node_cpus, self._last = None, 0, {}

    def setup(self, **info):
        # here, not in __init__: a restored sweep unpickles this callback and needs a live actor again;
        # and it may be resumed with --address on a cluster, hence the node count
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) != 1:
            return
        self._node_cpus = int(nodes[0]["Resources"].get("CPU", 0))
        self._actor = ThreadShares.options(name=actor_name(self.experiment), get_if_exists=True).remote()
        self._actor.update.remote({})  # an actor found alive may hold an earlier run's shares
        self._last = {}

    def on_step_begin(self, iteration, trials, **info):
        if self._actor is None:
            return
        now = shares(trials, self.num_samples, self._node_cpus, self.base)
        if now != self._last:
            self._actor.update.remote(now)
            self._last = now
            if now:
                print("idle CPUs shared: " + ", ".join(f"trial {k} on {v} threads" for k, v in now.items()), flush=True)

    def __getstate__(self):  # the actor handle belongs to one Ray session; setup() finds or makes it again
        return {**self.__dict__, "_actor": None}


class TrialThreads:
    """Trial side: starts the trial on `resources.cpu` threads (a reused worker may still hold its last
    trial's share), then asks for this trial's share after each evaluation and sets torch's threads to it."""

    def __init__(self, experiment: str, trial_id: str, base_cpus: float, enabled: bool = True):
        self.trial_id, self.base, self._actor = trial_id, max(1, int(base_cpus)), None
        set_threads(self.base)
        if not enabled:  # checked here too: a resumed sweep keeps the callbacks it was started with
            return
        try:
            self._actor = ray.get_actor(actor_name(experiment))
        except ValueError:  # no sharing in this sweep (a cluster, or switched off)
            pass
        except Exception:  # only an optimisation: never fail a trial over it
            log.warning("thread shares unavailable; training on %d threads", self.base, exc_info=True)

    def refresh(self) -> None:
        threads = self.base
        if self._actor is not None:
            try:
                threads = ray.get(self._actor.threads.remote(self.trial_id), timeout=5) or self.base
            except ray.exceptions.GetTimeoutError:  # a saturated node: the base for now, ask again next time
                pass
            except Exception:  # the driver went away: keep training on what the trial was given
                log.warning("thread shares unavailable; staying at %d threads", self.base, exc_info=True)
                self._actor = None
        if threads != torch.get_num_threads():
            set_threads(threads)
