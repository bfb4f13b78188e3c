"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records the mail it accepts.

RecordingSmtpServer(user, password) offers AUTH LOGIN/PLAIN over plain text (no TLS on a test
port) and accepts only that user and password (``logins`` records each success); ``messages``
holds each accepted mail, parsed.
"""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.docker_env import free_port


class RecordingSmtpServer:
    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []
        self.arrived = threading.Event()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self.authenticate,
                                     auth_require_tls=False)
        self.controller.start()

    def authenticate(self, server: object, session: object, envelope: object, mechanism: str,
                     auth_data: object) -> AuthResult:
        accepted = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()) == (self.user, self.password)
        if accepted:
            self.logins.append(self.user)
        return AuthResult(success=accepted)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)
        self.arrived.set()
        return "250 Message accepted"

    def close(self) -> None:
        self.controller.stop()
