"""Decisions: advise factors before training, select the pixel size after, plan the acquisition.

Each decision is rules (pure functions on measurements or the sweep's tables) apart from its words:

advise       object size vs the receptive field per factor -> verdicts    (advise_text: reasons)
select       the factor after a sweep -> `Selection`                       (select_text: reason, caveat, report)
equivalence  each factor against the best: paired effect size and equivalence decision
plan         objects and bytes per field and per hour at each factor       (plan_text: the table)
"""
