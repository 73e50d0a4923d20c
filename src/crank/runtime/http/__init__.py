"""The HTTP API of ``crank run`` (Starlette on uvicorn).

The package itself imports nothing: importing one of its modules (``limits``, which
the console reads bodies with) must not load the whole app, which imports the console.
The app is :func:`crank.runtime.http.app.create_app`; its services are built by
:func:`crank.runtime.http.services.build_services`.
"""
