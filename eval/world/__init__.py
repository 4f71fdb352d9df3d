"""The interaction world: simulated shoppers on the real catalog and real purchase histories."""
