"""The measured thread choice (rectflow.threads.Tuner), on a fake clock: no timed tests."""
from rectflow.machine.threads import Tuner


class FakeMachine:
    """A clock, and work whose cost depends on the thread count currently set."""

    def __init__(self, cost: dict[int, float]):
        self.now, self.cost, self.threads, self.sets = 0.0, cost, None, []

    def timer(self) -> float:
        return self.now

    def set(self, n: int) -> None:
        self.threads = n
        self.sets.append(n)

    def step(self) -> int:
        self.now += self.cost[self.threads]
        return self.threads


def run(machine: FakeMachine, units: int, **kw) -> tuple[Tuner, list[str], list[int]]:
    said: list[str] = []
    t = Tuner([1, 2], say=said.append, timer=machine.timer, setter=machine.set, **kw)
    ran_at = [t.run(machine.step) for _ in range(units)]
    return t, said, ran_at


def test_busy_machine_picks_one_thread_and_cuts_the_slow_probe_short():
    m = FakeMachine({1: 0.01, 2: 0.4})   # 2 threads 40x slower, as on a loaded 2-core box
    t, said, ran_at = run(m, 50, probe=6)
    assert t.chosen == 1 and m.threads == 1
    assert ran_at.count(2) == 1            # one slow step was enough to rule 2 threads out
    assert t.stopped == {2: 1}
    assert ran_at[-1] == 1 and len(said) == 1
    assert said[0].startswith("threads: 1, the faster") and "2 threads 400 ms/step" in said[0]


def test_idle_machine_keeps_the_faster_many_threads():
    m = FakeMachine({1: 0.02, 2: 0.012})
    t, said, ran_at = run(m, 40, probe=6)
    assert t.chosen == 2 and m.threads == 2
    assert ran_at.count(1) == 7            # the uncounted first step and six probed ones
    assert t.stopped == {} and "threads: 2, the faster" in said[0]


def test_rechecks_after_a_while_and_follows_a_change_of_load():
    m = FakeMachine({1: 0.02, 2: 0.01})
    t, said, _ = run(m, 20, probe=4, recheck=1.0)
    assert t.chosen == 2
    m.cost = {1: 0.02, 2: 0.5}             # another job starts
    for _ in range(200):
        t.run(m.step)
    assert t.chosen == 1 and m.threads == 1 and len(said) == 2
    m.cost = {1: 0.02, 2: 0.01}            # and ends
    for _ in range(200):
        t.run(m.step)
    assert t.chosen == 2 and len(said) == 3


def test_a_fixed_thread_count_is_not_tuned(monkeypatch):
    from rectflow.machine import threads
    threads.configure(1)
    assert threads.tuner() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    threads.configure()
    assert threads.tuner() is None         # OMP_NUM_THREADS is the user's fixed choice
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "machine_cores", lambda: 2)
    threads.configure()
    assert isinstance(threads.tuner(), threads.Tuner)
    assert threads.tuner(world=2) is None  # ranks of a distributed run keep one number
    threads.configure(1)


def test_the_first_line_of_a_measured_choice_does_not_contradict_the_second(monkeypatch):
    """The default policy's first line says the count is provisional, so the Tuner's later
    "threads: 1, the faster here" reads as its outcome, not as a second setting."""
    from rectflow.machine import threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "machine_cores", lambda: 2)
    try:
        line = threads.configure()
        assert line.startswith("threads: 2 for now (2 cores;")
        assert "training measures 1 and 2 on its first steps and keeps the faster" in line
        assert threads.configure(2).startswith("threads: 2 (given;")   # a given count is final
    finally:
        threads.configure(1)
