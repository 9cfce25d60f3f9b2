"""The mathematics, with no file IO: the interpolant and time samplers (:mod:`.path`), seeded
index-addressed draws (:mod:`.seeding`), the ODE solvers (:mod:`.solvers`), path and sample
metrics (:mod:`.metrics`), and classifier-free guidance as a velocity wrapper
(:mod:`.guidance`)."""
