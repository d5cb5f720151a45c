"""The metering gateway (``metering serve``): authenticate, admit, forward, record."""

from metering.gateway.admission import AdmitAll, Admitter, RequestInfo
from metering.gateway.app import GatewayApp, create_app

__all__ = ["AdmitAll", "Admitter", "GatewayApp", "RequestInfo", "create_app"]
