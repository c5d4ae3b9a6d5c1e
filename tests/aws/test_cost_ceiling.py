"""The spend ceiling and the abuse guards of a deployment: prod reserves the convert function's
concurrency and caps its event source at the same number by default, the README states what that costs
at most in dollars an hour, and the optional WAF rate-based rule and AWS Budgets alarm are what they say."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_GB_SECOND_USD = 0.0000166667  # x86_64, us-east-1, the first 6 billion GB-seconds a month


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def express() -> dict[str, Any]:
    return yaml_parse((ROOT / "deploy" / "api-express.yaml").read_text())


def prod_overrides() -> dict[str, str]:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return dict(i.split("=", 1) for i in config["prod"]["deploy"]["parameters"]["parameter_overrides"])


def test_prod_reserves_the_event_sources_concurrency_by_default(sam: dict[str, Any]) -> None:
    prod = prod_overrides()
    assert prod["ReservedConcurrency"] == prod["MaxConcurrency"] != "0"
    function = sam["Resources"]["ConvertFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"]["Fn::If"][1] == {"Ref": "ReservedConcurrency"}
    assert function["Events"]["ConvertQueue"]["Properties"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "MaxConcurrency"}
    }


def test_the_readme_states_the_ceiling_in_dollars_an_hour() -> None:
    prod = prod_overrides()
    gb = int(prod["FunctionMemory"]) / 1024
    hourly = int(prod["MaxConcurrency"]) * gb * LAMBDA_GB_SECOND_USD * 3600
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Security") :]
    assert f"${hourly:.2f} an hour" in section, f"README's security section should say ${hourly:.2f} an hour"
    assert f"${hourly * 24:.0f} a day" in section
    # and what an unreserved function in the account's default 1000 concurrency would cost
    assert re.search(r"\$17\d an hour", section)


def test_the_budget_alarm_is_optional_and_tells_the_alarm_topic(sam: dict[str, Any]) -> None:
    assert sam["Parameters"]["MonthlyBudget"]["Default"] == 0
    assert sam["Conditions"]["HasBudget"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, 0]}]}
    budget = sam["Resources"]["CostBudget"]
    assert budget["Condition"] == "HasBudget"
    props = budget["Properties"]
    assert props["Budget"]["BudgetLimit"] == {"Amount": {"Ref": "MonthlyBudget"}, "Unit": "USD"}
    assert props["Budget"]["TimeUnit"] == "MONTHLY" and props["Budget"]["BudgetType"] == "COST"
    kinds = {n["Notification"]["NotificationType"] for n in props["NotificationsWithSubscribers"]}
    assert kinds == {"ACTUAL", "FORECASTED"}
    for notification in props["NotificationsWithSubscribers"]:
        assert notification["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": "AlarmTopic"}}]
    policy = sam["Resources"]["AlarmTopicBudgetPolicy"]
    assert policy["Condition"] == "HasBudget"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "budgets.amazonaws.com"} and statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_rate_based_rule_is_optional_counts_addresses_and_answers_429(express: dict[str, Any]) -> None:
    assert express["Parameters"]["RateLimitPer5Minutes"]["Default"] == 0
    assert express["Conditions"]["HasRateLimit"] == {
        "Fn::And": [{"Condition": "HasImage"}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "RateLimitPer5Minutes"}, 0]}]}]
    }
    acl = express["Resources"]["WebAcl"]
    assert acl["Condition"] == "HasRateLimit"
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL" and props["DefaultAction"] == {"Allow": {}}
    (rule,) = props["Rules"]
    statement = rule["Statement"]["RateBasedStatement"]
    assert statement == {"Limit": {"Ref": "RateLimitPer5Minutes"}, "EvaluationWindowSec": 300, "AggregateKeyType": "IP"}
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = props["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON" and '"detail": "Too many requests' in body["Content"]
    association = express["Resources"]["WebAclAssociation"]
    assert association["Condition"] == "HasRateLimit"
    assert association["Properties"] == {
        "ResourceArn": {"Fn::GetAtt": ["Service", "ECSManagedResourceArns.IngressPath.LoadBalancerArn"]},
        "WebACLArn": {"Fn::GetAtt": ["WebAcl", "Arn"]},
    }
