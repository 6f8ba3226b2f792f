"""How a test reads a self-check's result: passed, or not yet with a given message."""


def passed(result, key):
    """True when the check of exercise `key` passed."""
    return bool(result) and repr(result).startswith(f"Exercise {key}: passed.")


def failed_with(result, key, text):
    """True when the check of exercise `key` did not pass and its message contains text."""
    return (
        not result and repr(result).startswith(f"Exercise {key}: not yet.") and text in repr(result)
    )


def drawn(key, seed, run="run-a"):
    """Exercise `key`'s inputs as the grader draws them for one run (seed, run token): the
    decoded inputs and their digest, read from the JSON the kernel and the judge get."""
    import numpy as np
    from gradclinic.checks._core import chapter_inputs, chapter_of_key
    from gradclinic.probes._core import read_inputs

    text = chapter_inputs(chapter_of_key(key), np.random.default_rng(seed), run=run)
    inputs, digests = read_inputs(text)
    return inputs[key], digests[key]


def judged_at_drawn_inputs(ex, answer, seeds=(1, 2, 3)):
    """Check `answer` (a right one) at several grading runs' inputs; return what a forger gets.

    The answer must pass at each run's own inputs (so the grader's draws suit the exercise),
    and its evidence must fail at another run's, even relabelled with that run's digest, unless
    the exercise has no inputs (its evidence is the answer itself). Returns the verdicts of the
    relabelled evidence.
    """
    from gradclinic.checks._core import NOT_THIS_RUN
    from gradclinic.probes._core import INPUTS_KEY, decode_evidence, encode_evidence

    relabelled = []
    for seed in seeds:
        mine, digest = drawn(ex.key, seed)
        evidence = ex.collect(answer, mine, digest)
        evidence = decode_evidence(encode_evidence({ex.key: evidence}))[ex.key]
        result = ex.verdict(evidence, mine, digest)
        assert result.passed, (ex.key, seed, result)
        other, other_digest = drawn(ex.key, seed + 100, run="run-b")
        stale = ex.verdict(evidence, other, other_digest)
        assert not stale.passed and stale.message == NOT_THIS_RUN, (ex.key, seed, stale)
        relabelled.append(ex.verdict({**evidence, INPUTS_KEY: other_digest}, other, other_digest))
    return relabelled


def write_check_pair(folder, name, probes, judges):
    """A private check file as grade.py --checks takes it: folder/NAME.py (judges, inputs,
    references: never in a sandbox) and folder/NAME_probes.py beside it (the probes, the
    only half a sandbox gets). Returns the path of NAME.py, the one --checks names."""
    (folder / f"{name}_probes.py").write_text(probes)
    path = folder / f"{name}.py"
    path.write_text(judges)
    return path


def scratch_registries(monkeypatch):
    """Copies of the registries of exercises and probes, the book's in them, so that what a
    test registers (a test chapter's check files) stays out of the other tests."""
    from gradclinic.checks import _core
    from gradclinic.probes import _core as probes_core

    monkeypatch.setattr(_core, "_REGISTRY", dict(_core.registry()))
    monkeypatch.setattr(probes_core, "_PROBES", dict(probes_core._PROBES))
