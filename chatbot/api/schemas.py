"""Request and response shapes of the API (pydantic), also the source of the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chatbot.phone import InvalidPhoneError, normalise_phone


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, v: object) -> object:
        # PostgreSQL (FerretDB's storage) cannot hold U+0000 in a string: refused here as
        # invalid input, not by the database as a 500 (found by tests/integration/test_fuzz.py).
        values = v if isinstance(v, list) else [v]
        if any(isinstance(item, str) and "\x00" in item for item in values):
            raise ValueError("must not contain the NUL character (U+0000)")
        return v


class StartChat(_In):
    phoneNumber: str = Field(max_length=32, description="E.164, or Indonesian 08…/62…")
    language: Literal["id", "en"] | None = None

    @field_validator("phoneNumber")
    @classmethod
    def _phone(cls, v: str) -> str:
        try:
            return normalise_phone(v)
        except InvalidPhoneError as exc:
            raise ValueError(str(exc)) from None


class VerifyChat(_In):
    challengeId: str = Field(min_length=10, max_length=64)
    code: str = Field(pattern=r"^\d{6}$")


class SendMessage(_In):
    text: str = Field(min_length=1, max_length=1000)
    clientMessageId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


class Receipts(_In):
    messageIds: list[str] = Field(min_length=1, max_length=100)


class HistoryQuery(_In):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200)


class RiskQuery(_In):
    risk: str = Field(default="medium,high", pattern=r"^(low|medium|high)(,(low|medium|high))*$")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=64)


class OverdueQuery(_In):
    limit: int = Field(default=50, ge=1, le=200)
    action: str = Field(
        default="rescreen_2_weeks,routine",
        pattern=r"^(routine|rescreen_2_weeks)(,(routine|rescreen_2_weeks))*$",
    )


class CorrectChild(_In):
    birthDate: date | None = Field(default=None, description="YYYY-MM-DD, not in the future")
    gestationalWeeks: int | None = Field(default=None, ge=22, le=44, description="null: unknown")

    @model_validator(mode="after")
    def _something(self) -> CorrectChild:
        if not self.model_fields_set & {"birthDate", "gestationalWeeks"}:
            raise ValueError("send birthDate or gestationalWeeks")
        if "birthDate" in self.model_fields_set and self.birthDate is None:
            raise ValueError("birthDate cannot be removed")
        return self


class DueQuery(_In):
    month: str | None = Field(
        default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default this month"
    )
    posyandu: str | None = Field(default=None, max_length=20, pattern=r"^[A-Za-z0-9-]+$")
    status: str = Field(
        default="due,overdue,rescreen,referred",
        pattern=r"^(due|overdue|rescreen|referred)(,(due|overdue|rescreen|referred))*$",
    )
    q: str | None = Field(default=None, max_length=100, description="part of the child's name")
    limit: int = Field(default=200, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=64)


class ExportQuery(_In):
    month: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    language: Literal["id", "en"] | None = Field(
        default=None, description="of the results and actions; default the user's"
    )
    posyandu: str | None = Field(default=None, max_length=20, pattern=r"^[A-Za-z0-9-]+$")


class NewContact(_In):
    kind: Literal["contacted", "referral_visited"]
    note: str = Field(default="", max_length=500)


class NewPosyandu(_In):
    code: str = Field(min_length=2, max_length=20, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]+$")
    name: str = Field(min_length=1, max_length=100)


class RoleGrant(_In):
    phoneNumber: str = Field(max_length=32, description="a number that started a chat")
    role: Literal["parent", "health_worker", "admin"]
    posyandu: list[str] = Field(default=[], max_length=50, description="health workers only")

    @field_validator("phoneNumber")
    @classmethod
    def _phone(cls, v: str) -> str:
        try:
            return normalise_phone(v)
        except InvalidPhoneError as exc:
            raise ValueError(str(exc)) from None


# --- responses (documented in OpenAPI; the views build plain dicts of these shapes) ---
class User(BaseModel):
    id: str
    phoneNumber: str
    role: Literal["parent", "health_worker", "admin"]
    language: Literal["id", "en"]
    consentAt: datetime | None


class StartResult(BaseModel):
    verificationRequired: bool
    token: str | None = None
    user: User | None = None
    challengeId: str | None = None
    expiresInSeconds: int | None = None


class VerifyResult(BaseModel):
    token: str
    user: User


class QuickReply(BaseModel):
    label: str
    value: str


class OutMessage(BaseModel):
    id: str
    text: str
    quickReplies: list[QuickReply]
    status: Literal["queued", "sent", "delivered", "failed"]
    createdAt: datetime


class InMessage(BaseModel):
    id: str
    clientMessageId: str
    text: str
    status: Literal["received", "handled"]
    createdAt: datetime


class Turn(BaseModel):
    message: InMessage
    replies: list[OutMessage]
    duplicate: bool
    step: str | None


class DeliveryError(BaseModel):
    code: int | None
    title: str | None


class HistoryMessage(BaseModel):
    id: str
    direction: Literal["inbound", "outbound"]
    text: str
    status: str
    createdAt: datetime
    clientMessageId: str | None = None
    replyTo: str | None = None
    quickReplies: list[QuickReply] | None = None
    # A reply that failed: why (e.g. whatsapp_refused, outside_window, send_unconfirmed),
    # and Meta's error code and title when WhatsApp said so.
    failureReason: str | None = None
    error: DeliveryError | None = None


class History(BaseModel):
    messages: list[HistoryMessage]
    nextCursor: str | None


class ReceiptsResult(BaseModel):
    delivered: int


class LastScreening(BaseModel):
    questionnaireId: str
    bracket: int
    category: str
    riskLevel: Literal["low", "medium", "high"]
    yesCount: int
    itemCount: int
    nextAction: Literal["routine", "rescreen_2_weeks", "refer"]
    nextDueAt: datetime | None
    completedAt: datetime


class Child(BaseModel):
    id: str
    name: str
    birthDate: date
    sex: Literal["male", "female"]
    gestationalWeeks: int | None
    status: Literal["active", "archived"]
    lastScreening: LastScreening | None


class Children(BaseModel):
    children: list[Child]


class ArchivedChild(BaseModel):
    child: Child


class RecentScreening(BaseModel):
    id: str
    riskLevel: Literal["low", "medium", "high"]
    completedAt: datetime


class ChildSummary(BaseModel):
    child: Child
    recentScreenings: list[RecentScreening]


class Answer(BaseModel):
    number: int
    domains: list[str]
    answer: bool


class AgeUsed(BaseModel):
    months: int
    days: int


class Age(BaseModel):
    chronological: AgeUsed
    corrected: AgeUsed | None
    usedMonths: int


class Questionnaire(BaseModel):
    id: str
    childId: str
    instrument: str
    bankVersion: str
    bracket: int
    age: Age
    screeningDate: date
    answers: list[Answer]
    yesCount: int | None
    itemCount: int
    category: str | None
    riskLevel: Literal["low", "medium", "high"] | None
    noByDomain: dict[str, list[int]] | None
    nextAction: Literal["routine", "rescreen_2_weeks", "refer"] | None
    nextDueAt: datetime | None
    status: Literal["in_progress", "completed", "abandoned"]
    startedAt: datetime
    completedAt: datetime | None


class WorkerChild(Child):
    parentPhone: str | None = None


class WorkerChildren(BaseModel):
    children: list[WorkerChild]
    nextCursor: str | None = None


class Stats(BaseModel):
    childrenByRisk: dict[str, int]
    overdueRescreens: int
    generatedAt: datetime


class Posyandu(BaseModel):
    code: str
    name: str


class PosyanduList(BaseModel):
    posyandu: list[Posyandu]


class CreatedPosyandu(BaseModel):
    posyandu: Posyandu


class Contact(BaseModel):
    kind: Literal["contacted", "referral_visited"]
    note: str
    at: datetime


class ContactResult(BaseModel):
    contact: Contact


class RowScreening(BaseModel):
    completedAt: datetime | None
    category: Literal["appropriate", "doubtful", "possible_deviation"] | None
    riskLevel: Literal["low", "medium", "high"] | None
    nextAction: Literal["routine", "rescreen_2_weeks", "refer"] | None
    noDomains: list[str] = Field(description="domains of the 'no' answers")


class DueChild(BaseModel):
    id: str
    name: str
    sex: Literal["male", "female"]
    birthDate: date
    ageMonths: int | None
    posyandu: str | None
    status: Literal["due", "overdue", "rescreen", "referred"] | None
    dueAt: date | None
    lastScreening: RowScreening | None
    lastContact: Contact | None
    parentPhone: str | None = Field(default=None, description="members of its posyandu only")


class DueList(BaseModel):
    month: str
    counts: dict[str, int]
    children: list[DueChild]
    nextCursor: str | None


class HistoryScreening(RowScreening):
    ageMonths: int | None
    yesCount: int | None
    itemCount: int | None


class ChildHistory(BaseModel):
    child: DueChild
    screenings: list[HistoryScreening]
    contacts: list[Contact]


class RoleResult(BaseModel):
    phoneNumber: str
    role: Literal["parent", "health_worker", "admin"]
    posyandu: list[str]


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str
    details: object | None = None


class Error(BaseModel):
    error: ErrorBody
