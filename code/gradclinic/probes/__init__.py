"""The checks' probes: what the grader runs in a student's kernel (gradclinic.probes.chN).

Each probe calls a student's answer on the inputs it is given and returns plain data. No
judge, reference or answer key lives here: those are in gradclinic.checks, which the grading
sandbox does not hold. The chapter modules (chN.py) load on first use.
"""

from gradclinic.probes._core import CheckFailed, probe

__all__ = ["CheckFailed", "probe"]
