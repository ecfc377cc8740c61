"""``mdi-mlmm md``: ML/MM molecular dynamics with LAMMPS or GROMACS as the MM host."""
from __future__ import annotations

import argparse

from ..errors import UserInputError
from ..hosts import registry as hosts
from ..protocol.timestep import CONSTRAINTS
from ._types import (TIMESTEP_HELP, add_mass_repartition, add_timestep_override, check_timestep, nonneg_int, port,
                     positive_float, positive_int)
from .engine import add_model_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "md", help="ML/MM molecular dynamics (LAMMPS or GROMACS host, ML engine over MDI)",
        description="Run ML/MM MD of a GROMACS system: the ML region (--ml selection, or --ndx/--ml-group) is "
                    "described by the ML model, everything else by the force field; ML-MM interactions are "
                    "classical (mechanical embedding). The ML engine is started here, or a running one is "
                    "accepted on --engine-port. --model mm (LAMMPS host) runs plain MM without an engine. "
                    "Writes energies.csv and summary.json (the same columns and keys on both hosts; docs/lammps.md) "
                    "next to the engine's own files (LAMMPS: traj.dcd + topology.gro; GROMACS: md.edr, md.xtc). "
                    + TIMESTEP_HELP)
    p.add_argument("--host", choices=hosts.names(), default=hosts.names()[0], help="MM host (default %(default)s)")
    p.add_argument("--top", required=True, help="GROMACS topology (.top)")
    p.add_argument("--gro", required=True, help="GROMACS coordinates (.gro) with the box; should be equilibrated")
    p.add_argument("--ml", metavar="SELECTION", help="MDAnalysis selection of the ML atoms, e.g. \"resname MOL\"")
    p.add_argument("--ndx", help="GROMACS index file holding the ML group")
    p.add_argument("--ml-group", help="index group of the ML atoms (with --ndx), e.g. ML")
    add_model_options(p)
    p.add_argument("--steps", type=positive_int, required=True, help="number of MD steps")
    p.add_argument("--dt", type=positive_float, default=0.5,
                   help="time step, fs (default 0.5; warning above 1, refused above 2; with --constraints h-bonds above 2 "
                        "and 4, with --mass-repartition too above 4 and 5: see below)")
    add_timestep_override(p)
    p.add_argument("--constraints", choices=CONSTRAINTS, default="none",
                   help="none (default: every bond flexible, waters rigid) or h-bonds: every X-H bond, "
                        "the ML region's included, constrained at its force-field length b0 (the [ bonds ] "
                        "parameter; GROMACS: LINCS, LAMMPS: fix rattle/shake with the waters), which allows --dt 2 "
                        "(see below, docs/gromacs.md, docs/lammps.md)")
    add_mass_repartition(p)
    p.add_argument("--ensemble", choices=["nve", "nvt", "npt"], default="nvt", help="default nvt")
    p.add_argument("--temperature", type=positive_float, default=298.15, help="K (initial velocities, thermostat)")
    p.add_argument("--pressure", type=positive_float, default=1.0, help="bar (npt)")
    p.add_argument("--seed", type=positive_int, default=2024, help="velocity seed")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--engine-port", type=port, default=None,
                   help="accept an engine started by you (mdi-mlmm engine -mdi \"-role ENGINE -name ML -method TCP "
                        "-port P -hostname localhost\") instead of starting one")
    p.add_argument("--report-every", type=positive_int, default=100, help="progress line / thermo interval, steps")
    p.add_argument("--energy-every", type=positive_int, default=1, help="energies.csv row interval, steps (default 1)")
    p.add_argument("--traj-every", type=nonneg_int, default=100, help="trajectory frame interval, steps (0: none)")
    p.add_argument("--cutoff", type=positive_float, default=10.0, help="LJ and real-space Coulomb cutoff, Å (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--no-minimize", dest="minimize", action="store_false",
                   help="start dynamics from --gro as it is. By default the system is first minimized classically "
                        "with the ML atoms held fixed (LAMMPS: `minimize` with the ML atoms' forces zeroed and "
                        "SHAKE as restraints; GROMACS: steepest descent, template em, ML group frozen). In "
                        "mechanical embedding the forces on MM atoms are classical whatever the ML model, so this "
                        "minimizes the ML/MM energy over the MM coordinates at the ML region's given geometry; the "
                        "ML region itself is not relaxed (`mdi-mlmm prepare` writes it minimized with the force "
                        "field). Velocities in --gro are then not used (new ones are drawn at --temperature). "
                        "See docs/lammps.md, docs/gromacs.md")
    p.add_argument("--maxwarn", type=nonneg_int, default=0, metavar="N",
                   help="--host gromacs: gmx grompp warnings to accept (default 0); a rejection shows GROMACS's "
                        "own warning text")
    p.set_defaults(func=handler)


def _engine_options(args) -> list[str]:
    extra = []
    if args.model_dir:
        extra += ["--model-dir", args.model_dir]
    if args.member is not None:
        extra += ["--member", str(args.member)]
    extra += ["--dtype", args.dtype, "--threads", str(args.threads)]
    return extra


def handler(args: argparse.Namespace) -> int:
    from ..potentials.registry import is_ml

    if (args.ml is None) == (args.ml_group is None) and is_ml(args.model):
        raise UserInputError("give the ML region with --ml \"SELECTION\" or with --ndx FILE --ml-group NAME")
    if args.ml_group and not args.ndx:
        raise UserInputError("--ml-group needs --ndx FILE")
    # X-H bonds (the ML region's too) are flexible unless --constraints h-bonds (either host)
    from ..protocol.timestep import check_mass_repartition

    args.mass_repartition = check_mass_repartition(args.mass_repartition, constrained_xh=args.constraints == "h-bonds",
                                                   host=args.host)
    check_timestep(args.dt, constrained_xh=args.constraints == "h-bonds", allow_large=args.allow_large_dt,
                   hmr=bool(args.mass_repartition))
    if is_ml(args.model):
        from ..potentials import check_model_spec

        # before any conversion work: a bad spec or missing ANI files fail here, not in the engine's log
        check_model_spec(args.model, model_dir=args.model_dir, files=args.engine_port is None)
    if args.engine_port is not None:
        from ..engine.transport import check_port_free

        check_port_free(args.engine_port, option="--engine-port")
    kwargs = dict(ndx=args.ndx, ml_group=args.ml_group, temperature=args.temperature, pressure_bar=args.pressure,
                  engine_port=args.engine_port, seed=args.seed, report_every=args.report_every,
                  energy_every=args.energy_every, traj_every=args.traj_every, progress=not args.quiet,
                  engine_options=_engine_options(args), minimize=args.minimize)
    host = hosts.get(args.host)
    kwargs.update(_host_options(args, host))
    from .. import processes

    # SIGTERM/SIGINT (a batch scheduler, Ctrl-C): one error line, the engine and mdrun stopped
    from ..errors import Interrupted

    try:
        with processes.stop_on_signals():
            result = host.run_md(args.top, args.gro, args.ml, args.model, args.steps, args.dt, args.ensemble,
                                 args.out, **kwargs)
    except Interrupted as exc:  # md does not resume (hydration does): say what is left instead
        import signal

        raise Interrupted(exc.signum, f"stopped by {signal.Signals(exc.signum).name}; md does not resume — "
                                      f"the output so far is in {args.out}") from None
    print(host.format_md(result))
    return 0


#: options of one host or another: run_md keyword -> (option, its value in args)
_HOST_OPTIONS = {"cutoff_A": ("--cutoff", "cutoff"), "maxwarn": ("--maxwarn", "maxwarn"),
                 "constraints": ("--constraints", "constraints"),
                 "mass_repartition": ("--mass-repartition", "mass_repartition")}


def _host_options(args, host) -> dict:
    """The host-only options (``MD_OPTIONS`` of the host's package) the chosen host takes; another
    host's option given a non-default value is refused."""
    out = {}
    for key, (flag, dest) in _HOST_OPTIONS.items():
        value = getattr(args, dest)
        if key in host.MD_OPTIONS:
            out[key] = value
            continue
        owners = [h for h in hosts.names() if key in hosts.get(h).MD_OPTIONS]
        default = hosts.get(owners[0]).MD_OPTIONS[key] if owners else None
        if value != default:
            raise UserInputError(f"{flag} applies to --host {' or '.join(owners)} only")
    return out
