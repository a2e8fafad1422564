"""`list_confirmed_users` against Cognito served by moto over HTTP: paging and filtering."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import boto3
import pytest

from reconfigure.aws import Aws
from reconfigure.table import COGNITO_PAGE_SIZE as PAGE_SIZE
from reconfigure.users.plan import CognitoUser
from reconfigure.users.sync import list_confirmed_users

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_cognito_idp.type_defs import AttributeTypeTypeDef

T = TypeVar("T")
PASSWORD = "Corr3ct-Horse-Battery!"


@pytest.fixture
def cognito(moto_endpoint: str) -> CognitoIdentityProviderClient:
    client: CognitoIdentityProviderClient = boto3.client(
        "cognito-idp", region_name="us-east-1", endpoint_url=moto_endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


class Pool:
    """A fresh user pool with the `osid` custom attribute, as the real one has."""

    def __init__(self, client: CognitoIdentityProviderClient) -> None:
        self.client = client
        self.id = client.create_user_pool(
            PoolName=f"cabal-{uuid.uuid4().hex[:8]}",
            Schema=[{"Name": "osid", "AttributeDataType": "String", "Mutable": True}],
        )["UserPool"]["Id"]
        self.app = client.create_user_pool_client(
            UserPoolId=self.id, ClientName="web")["UserPoolClient"]["ClientId"]

    def admin_created(self, username: str, osid: str | None, *, confirm: bool) -> None:
        """FORCE_CHANGE_PASSWORD as created; CONFIRMED once the password is permanent."""
        attributes: list[AttributeTypeTypeDef] = (
            [{"Name": "custom:osid", "Value": osid}] if osid is not None else [])
        self.client.admin_create_user(UserPoolId=self.id, Username=username,
                                      UserAttributes=attributes, MessageAction="SUPPRESS")
        if confirm:
            self.client.admin_set_user_password(UserPoolId=self.id, Username=username,
                                                Password=PASSWORD, Permanent=True)

    def signed_up(self, username: str, osid: str, *, confirm: bool) -> None:
        """UNCONFIRMED after sign-up; CONFIRMED after an admin confirms it."""
        self.client.sign_up(ClientId=self.app, Username=username, Password=PASSWORD,
                            UserAttributes=[{"Name": "custom:osid", "Value": osid}])
        if confirm:
            self.client.admin_confirm_sign_up(UserPoolId=self.id, Username=username)

    def status(self, username: str) -> str:
        return self.client.admin_get_user(UserPoolId=self.id, Username=username)["UserStatus"]


class Recorder:
    """A `call` that runs the function directly and remembers what was called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, what: str, function: Callable[[], T], /) -> T:
        self.calls.append(what)
        return function()


def test_all_pages_only_confirmed_users_with_an_osid(
        cognito: CognitoIdentityProviderClient) -> None:
    pool = Pool(cognito)
    expected = set()
    for i in range(70):  # more than one page of confirmed users alone
        pool.admin_created(f"user{i:03d}", str(70000 + i), confirm=True)
        expected.add(CognitoUser(f"user{i:03d}", str(70000 + i)))
    for i in range(3):
        pool.signed_up(f"signup{i}", str(71000 + i), confirm=True)
        expected.add(CognitoUser(f"signup{i}", str(71000 + i)))
    for i in range(3):
        pool.signed_up(f"pending{i}", str(72000 + i), confirm=False)
    for i in range(8):
        pool.admin_created(f"forced{i}", str(73000 + i), confirm=False)
    for i in range(4):
        pool.admin_created(f"noosid{i}", None, confirm=True)
    # A raw value is passed through untouched: planning refuses it and says so.
    pool.admin_created("weird", " 70001", confirm=True)
    expected.add(CognitoUser("weird", " 70001"))
    assert pool.status("pending0") == "UNCONFIRMED"
    assert pool.status("forced0") == "FORCE_CHANGE_PASSWORD"
    assert pool.status("signup0") == pool.status("user000") == "CONFIRMED"

    call = Recorder()
    users = list_confirmed_users(cognito, pool.id, call)

    assert len(users) == len(set(users)) == 74
    assert set(users) == expected
    total = 70 + 3 + 3 + 8 + 4 + 1
    assert call.calls == ["cognito-idp.list_users"] * -(-total // PAGE_SIZE)
    assert len(call.calls) == 2


def test_exactly_one_full_page_ends_without_an_extra_empty_read(
        cognito: CognitoIdentityProviderClient) -> None:
    pool = Pool(cognito)
    for i in range(PAGE_SIZE):
        pool.admin_created(f"u{i}", str(5000 + i), confirm=i % 2 == 0)
    call = Recorder()
    users = list_confirmed_users(cognito, pool.id, call)
    assert sorted(u.osid for u in users) == [str(5000 + i) for i in range(0, PAGE_SIZE, 2)]
    assert 1 <= len(call.calls) <= 2  # moto may or may not hand back a final token


def test_empty_pool(cognito: CognitoIdentityProviderClient) -> None:
    assert list_confirmed_users(cognito, Pool(cognito).id, Recorder()) == []


def test_through_the_daemons_retry_wrapper(cognito: CognitoIdentityProviderClient) -> None:
    """`Aws.call` is what the cycle passes; a missing pool is permanent and raises."""
    pool = Pool(cognito)
    pool.admin_created("alice", "70001", confirm=True)
    aws = Aws(dynamodb=None, cognito=cognito, table="unused", max_backoff=0.01)
    assert list_confirmed_users(cognito, pool.id, aws.call) == [CognitoUser("alice", "70001")]
    with pytest.raises(cognito.exceptions.ResourceNotFoundException):
        list_confirmed_users(cognito, "us-east-1_doesnotexist", aws.call)
