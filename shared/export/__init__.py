"""Export: the pass (timer and run-now) that claims due batches and writes them to destinations as
data files, block by block, then a manifest.

May import: destinations, control, formats, secrets, and the base modules. The composition root
(shared.services) only for typing.
"""
