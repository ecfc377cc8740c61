"""The protocol of a run, low in the tree: the plan of a hydration free-energy run, the λ schedule
and the typed specs of its units. Hosts render it into their own input (mdp, LAMMPS commands);
nothing parses it back out of a template."""
