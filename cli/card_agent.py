"""`tessera card agent`: the card agent on the citizen's machine (added to the `card` group)."""

from __future__ import annotations

import sys

import click

from cli.cards import group


@group.command("agent")
@click.option("--origin", default=None, help="The IdP origin allowed to use the card (scheme://host[:port]); "
              "default: the origin of TESSERA_PUBLIC_URL.")
@click.option("--port", default=24727, show_default=True, type=click.IntRange(1, 65535),
              help="Port on 127.0.0.1 (the login page looks for the agent there).")
@click.option("--card", "number", default=None, help="The card number (token label) to use; "
              "default: the only card in the reader.")
@click.option("--idle-timeout", default=10.0, show_default=True, type=click.FloatRange(0.5, 300),
              help="Seconds a connection may stay open without sending a complete request.")
@click.pass_context
def agent(ctx: click.Context, origin: str | None, port: int, number: str | None, idle_timeout: float) -> None:
    """Run the card agent on 127.0.0.1: the "Log in with ID card" page signs its challenge with
    the card (after the PIN, counted by the card layer) through PKCS#11. Stop it with Ctrl-C."""
    from urllib.parse import urlsplit

    from cardsim.agent import serve
    from cardsim.config import CardSettings
    from cardsim.errors import CardError

    obj = ctx.obj
    origin = origin or obj.settings.public_url
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise click.ClickException(f"--origin must be scheme://host[:port], not {origin!r}")
    origin = f"{parts.scheme}://{parts.netloc}"

    def ready(server: object, signer: object) -> None:
        info = signer.info  # type: ignore[attr-defined]
        click.echo(f"card agent for card {info.card if hasattr(info, 'card') else info.number} ({info.holder}) "
                   f"on http://127.0.0.1:{port}, answering {origin} only", err=True)
        sys.stderr.flush()

    try:
        serve(CardSettings.from_env(obj.settings.home), origin, port, number, ready, idle_timeout)
    except CardError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    except KeyboardInterrupt:
        pass
