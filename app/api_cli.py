"""`tickbridge users create` and `tickbridge serve`, registered on the engine's typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.errors import ConfigError
from engine.settings import RuntimeSettings, TickbridgeSettings, load_group, load_settings


def register(app: typer.Typer) -> None:
    users = typer.Typer(no_args_is_help=True, help="API users.")

    @users.command("create")
    def users_create(
        username: Annotated[str, typer.Option(help="login name")],
        role: Annotated[str, typer.Option(help="admin | trader | subscriber")],
        password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                              help="at least 8 characters (prompted when omitted)")],
        url: Annotated[str | None, typer.Option("--url", help="database URL (default TICKBRIDGE_DATABASE_URL)")] = None,
    ) -> None:
        """Create an API user."""
        from sqlalchemy.orm import Session

        from api.audit import record
        from api.errors import ApiError
        from api.users import create_user
        from engine.store.db import make_engine, upgrade

        upgrade(url)
        engine = make_engine(url)
        try:
            with Session(engine) as db:
                user = create_user(db, username, role, password)
                record(db, "cli", "user.create", f"user:{user.id}", {"username": username, "role": role})
                db.commit()
                typer.echo(f"created {role} {username!r} (id {user.id})")
        except ApiError as exc:
            raise ConfigError(exc.field or "user", exc.message) from None
        finally:
            engine.dispose()

    @app.command("serve")
    def serve(host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="TCP port")] = 8000) -> None:
        """Run the control API (uvicorn) with the bot runtime (in a process of its own by default,
        TICKBRIDGE_RUNTIME=thread: in this one). SIGTERM or Ctrl-C: streams closed, requests
        drained (5 s at most), every bot stopped cleanly, exit 0."""
        from api import serving
        from api.app import create_app
        from api.logs import install_redaction
        from api.settings import Settings

        loaded = load_settings()  # before anything starts: a bad TICKBRIDGE_* value, exit 2
        settings = Settings.from_env(settings=loaded)  # no JWT secret of 32+ bytes: exit 2
        install_redaction()  # ?token= / ?api_key= of the streams appear as *** in uvicorn's logs
        control = _bot_control(loaded)
        try:
            _lower_priority(control, loaded.runtime)
            app_ = create_app(settings, control)
            typer.echo(f"tickbridge API on http://{host}:{port}/api/v1/docs")
            serving.run(app_, host, port, header_timeout_s=settings.body_timeout_s)
        finally:
            typer.echo("tickbridge API stopped; stopping the bots")
            control.close()  # stops every bot (open orders cancelled or kept per on_stop)
            typer.echo("bots stopped")
            import gc

            gc.freeze()  # the process ends now: no final sweep over every object pandas & co. made

    @app.command("demo")
    def demo(port: Annotated[int, typer.Option(help="API port")] = 8000,
             host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
             speed: Annotated[float, typer.Option(help="replay speed, x real time (0: as fast as possible)")] = 300.0,
             seconds: Annotated[float | None,
                                typer.Option("--for", help="stop by itself after this many seconds")] = None,
             url: Annotated[str | None, typer.Option("--url", help="database URL (default TICKBRIDGE_DATABASE_URL "
                                                                   "or sqlite:///var/tickbridge.db)")] = None) -> None:
        """The main job: the API with a demo paper bot on bundled real ticks; Ctrl-C stops cleanly."""
        from app.demo import DemoSettings, run_demo

        if speed < 0:
            raise ConfigError("speed", "must be 0 (as fast as possible) or positive")
        run_demo(DemoSettings(host=host, port=port, speed=speed, database_url=url, seconds=seconds),
                 say=typer.echo)

    app.add_typer(users, name="users")


def _lower_priority(control: object, runtime: RuntimeSettings | None = None) -> None:
    """TICKBRIDGE_API_NICE=N: the API process runs N nice levels below the bot runtime's process
    (started just before), so on a small machine a burst of requests, and argon2 logins, which use
    every core, take CPU from the bots last. Default 10 when the runtime has its own process
    (measured in docs/benchmarks.md: the bot kept 90-93 % of its idle CPU at 10-500 clients instead
    of 56-74 %, the API's throughput unchanged); 0 when bots share this process."""
    import os

    runtime = runtime if runtime is not None else load_group(RuntimeSettings)  # 0-19, checked there
    has_own_process = getattr(control, "pid", None) is not None
    nice = runtime.api_nice if runtime.api_nice is not None else (10 if has_own_process else 0)
    if nice and not has_own_process:
        raise ConfigError("TICKBRIDGE_API_NICE", "needs the runtime in its own process (TICKBRIDGE_RUNTIME=process)")
    if nice:
        os.nice(nice)


def _bot_control(settings: TickbridgeSettings | None = None):  # type: ignore[no-untyped-def]
    """The runtime's BotManager, configured by the environment (TICKBRIDGE_FEED_PATH, ...).

    TICKBRIDGE_RUNTIME=process (default) runs it in a child process behind the BotControl
    protocol (live.remote): bots and API requests then never share a GIL, and a bot's
    tick rate does not depend on the API's load. `thread` keeps it in this process."""
    loaded = settings if settings is not None else load_settings()
    if loaded.runtime.runtime == "thread":
        from live.manager import BotManager

        return BotManager.from_env(loaded)
    from live.remote import ProcessBots  # "process": the only other value the settings allow

    return ProcessBots()
