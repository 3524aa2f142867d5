"""Declarative automation: when each downstream asset reruns by itself.

- tokenized_dataset reruns when any clean partition updated (a partition whose file failed
  its schema check never updates, so a bad file triggers nothing; one that fails its GX gate
  is left out of the join by the gate record);
- the model assets rerun when their inputs updated *and* every blocking check of those
  inputs passed, including `tokenized_dataset_enough_new_rows`: a tiny file does not start
  a training.
"""

import dagster as dg

AC = dg.AutomationCondition

tokenize_condition = (
    AC.any_deps_updated().since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
).with_label("a clean partition updated")

downstream_condition = (AC.eager() & AC.all_deps_blocking_checks_passed()).with_label(
    "inputs updated and their blocking checks passed"
)
