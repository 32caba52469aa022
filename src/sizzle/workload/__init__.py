"""The workload layer: between "the provider says running" and "the user's model answers".

Every cloud instance is reached over SSH with a key pair Sizzle makes for its session
(`keys`), through tunnels to the model server, which listens on the instance's loopback only
(`tunnel`); the instance is set up by a boot script kept as a file in the package (`boot`).
"""
