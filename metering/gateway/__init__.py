"""The metering gateway (``metering serve``): authenticate, admit, forward, record."""

from metering.gateway.admission import Admission, AdmitAll, Admitter, RequestInfo
from metering.gateway.app import GatewayApp, create_app

__all__ = ["Admission", "AdmitAll", "Admitter", "GatewayApp", "RequestInfo", "create_app"]
