"""`tickbridge users create` and `tickbridge serve`, registered on the engine's typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.errors import ConfigError


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
        """Run the control API (uvicorn) with the in-process bot runtime."""
        import uvicorn

        from api.app import create_app
        from api.settings import Settings

        control = _bot_control()
        app_ = create_app(Settings.from_env(), control)
        typer.echo(f"tickbridge API on http://{host}:{port}/api/v1/docs")
        try:
            # signal frames are small JSON: compressing each one per client costs more CPU than it saves
            uvicorn.run(app_, host=host, port=port, log_level="info", ws_per_message_deflate=False)
        finally:
            control.close()  # stops every bot (open orders cancelled or kept per on_stop)

    @app.command("demo")
    def demo(port: Annotated[int, typer.Option(help="API port")] = 8000,
             host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
             speed: Annotated[float, typer.Option(help="replay speed, x real time (0: as fast as possible)")] = 300.0,
             seconds: Annotated[float | None, typer.Option("--for", help="stop by itself after this many seconds")] = None,
             url: Annotated[str | None, typer.Option("--url", help="database URL (default TICKBRIDGE_DATABASE_URL "
                                                                   "or sqlite:///var/tickbridge.db)")] = None) -> None:
        """The main job: the API with a demo paper bot on bundled real ticks; Ctrl-C stops cleanly."""
        from api.demo import DemoSettings, run_demo

        if speed < 0:
            raise ConfigError("speed", "must be 0 (as fast as possible) or positive")
        run_demo(DemoSettings(host=host, port=port, speed=speed, database_url=url, seconds=seconds),
                 say=typer.echo)

    app.add_typer(users, name="users")


def _bot_control():  # type: ignore[no-untyped-def]
    """The runtime's BotManager, configured by the environment (TICKBRIDGE_FEED_PATH, ...)."""
    from engine.runtime.manager import BotManager

    return BotManager.from_env()
