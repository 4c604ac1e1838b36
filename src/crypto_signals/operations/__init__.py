"""What a person does about a finding: acknowledge, adopt, close, undo, release, reset.

Contract section 3 ("Operator commands"). None of these ever sends anything to the broker;
each change is written with a precondition on the documents it changes (no lost update when
the signal job writes at the same moment), under the run lease (never while a run is
deciding), together with its audit record in ``reconciler_audit``, in one atomic batch.

``changes`` computes what a command would write (pure); ``service`` checks, writes and audits.
"""
