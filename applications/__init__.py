"""Applications (申报) and 免申即享 payouts: from a recommendation to money reaching the firm.

A firm's application per policy moves through :mod:`applications.lifecycle` (one transition table);
the policy's department and curators move it one by one or by importing the department's result
list (:mod:`applications.io`). 免申即享 policies pay without an application: staff freeze the eligible
list from the matcher's stored results, confirm or exclude firms and record payouts
(:mod:`applications.exempt`). :mod:`applications.stats` turns both into figures. Firms are told of
each change through push (``core.events.ApplicationStatusChanged`` / ``ExemptPaid``).
"""
