"""`byoa api`: the HTTP face of the router (FastAPI on uvicorn), stateless, Redis only.

`app.create_app` builds the application: the unified task API (GoAPI / PiAPI shape, in
`taskapi`), keys checked in `auth`, bodies bounded in `body`, answers shaped in
`envelope`, per-process metrics in `metrics`, retries named by `Idempotency-Key` in
`idempotency`.
"""
