"""One message per run to the people on call: by email over SMTP, through SNS, or SES.

Configured in luigi.cfg's ``[RfNotify]`` section; the SMTP password comes from the
environment (``RF_SMTP_PASSWORD``), never from a file. A run with 500 failed tasks sends one
message that lists them. A notification that cannot be sent is logged; it never changes the
outcome of the run it reports.
"""

import logging
import os
import smtplib
from email.message import EmailMessage

import luigi

from rf_pipelines import clients, retry
from rf_pipelines.errors import ConfigError, TransientError

log = logging.getLogger(__name__)
CHANNELS = ("smtp", "sns", "ses")


class RfNotify(luigi.Config):
    """Where failure and import reports go (``[RfNotify]`` in luigi.cfg)."""

    channels = luigi.Parameter(default="", description="Comma-separated: smtp, sns, ses.")
    email_to = luigi.Parameter(default="", description="Comma-separated recipients.")
    email_from = luigi.Parameter(default="rf-pipelines@localhost", description="Sender.")
    smtp_host = luigi.Parameter(default="127.0.0.1", description="SMTP server.")
    smtp_port = luigi.IntParameter(default=25, description="SMTP port.")
    smtp_user = luigi.Parameter(default="", description="SMTP user (password: RF_SMTP_PASSWORD).")
    smtp_starttls = luigi.BoolParameter(default=False, description="Use STARTTLS.")
    sns_topic_arn = luigi.Parameter(default="", description="SNS topic for reports.")
    on_import_complete = luigi.BoolParameter(
        default=False, description="Also report every scheduled import, not only failures."
    )


def channels():
    """The configured channels.

    Raises:
        ConfigError: an unknown channel, or one without its settings.
    """
    cfg = RfNotify()
    chosen = [c.strip() for c in cfg.channels.split(",") if c.strip()]
    for channel in chosen:
        if channel not in CHANNELS:
            raise ConfigError(
                f"[RfNotify] channels: unknown {channel!r}; use {', '.join(CHANNELS)}"
            )
    if ("smtp" in chosen or "ses" in chosen) and not cfg.email_to:
        raise ConfigError("[RfNotify] email_to is empty: smtp and ses need recipients")
    if "sns" in chosen and not cfg.sns_topic_arn:
        raise ConfigError("[RfNotify] sns_topic_arn is empty: sns needs a topic")
    return chosen


def failure_report(run_name, failures, summary=""):
    """(subject, body) of a run's failures, each with its parameters, error and log."""
    subject = f"[rf-pipelines] {run_name}: {len(failures)} task(s) failed"
    lines = [f"{len(failures)} task(s) failed in run {run_name}.", ""]
    for n, failure in enumerate(failures, 1):
        params = ", ".join(f"{k}={v}" for k, v in sorted(failure.get("params", {}).items()))
        lines += [
            f"{n}. {failure.get('family')}({params})",
            f"   error: {failure.get('error', 'see the log')}",
            f"   log: {failure.get('log', '-')}",
        ]
        if failure.get("visualiser"):
            lines.append(f"   visualiser: {failure['visualiser']}")
    if summary:
        lines += ["", summary.strip()]
    return subject, "\n".join(lines) + "\n"


def send(subject, body):
    """Sends one message on every configured channel; returns the channels that took it."""
    sent = []
    for channel in channels():
        try:
            retry.call(_SENDERS[channel], RfNotify(), subject, body)
            sent.append(channel)
        except Exception as err:  # noqa: BLE001 - a report must not change the run's outcome
            log.error("could not send the report by %s: %s", channel, err)
    return sent


def _smtp(cfg, subject, body):
    message = EmailMessage()
    message["Subject"], message["From"] = subject, cfg.email_from
    message["To"] = cfg.email_to
    message.set_content(body)
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=15) as server:
            if cfg.smtp_starttls:
                server.starttls()
            if cfg.smtp_user:
                server.login(cfg.smtp_user, os.environ.get("RF_SMTP_PASSWORD", ""))
            server.send_message(message)
    except (OSError, smtplib.SMTPServerDisconnected) as err:
        raise TransientError(f"SMTP {cfg.smtp_host}:{cfg.smtp_port}: {err}") from err


def _sns(cfg, subject, body):
    clients.aws_client("sns").publish(
        TopicArn=cfg.sns_topic_arn, Subject=subject[:99], Message=body
    )


def _ses(cfg, subject, body):
    clients.aws_client("ses").send_email(
        Source=cfg.email_from,
        Destination={"ToAddresses": [a.strip() for a in cfg.email_to.split(",") if a.strip()]},
        Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}},
    )


_SENDERS = {"smtp": _smtp, "sns": _sns, "ses": _ses}
