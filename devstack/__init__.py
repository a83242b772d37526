"""Real local stand-ins for production services, shared by the tests, the benchmarks and docker/.

`moto_stack` runs a `moto_server` process playing a HyperFrames AWS stack; `airflow_stack` runs a
real Airflow (api-server, scheduler, dag-processor, triggerer). Neither is a mock of our code:
both are the real programs, started on this machine. Not shipped in the wheel.
"""
