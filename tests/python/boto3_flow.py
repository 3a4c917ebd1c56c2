"""Drives iamd's AWS Query API with boto3, as an application would, for iamd's tests.

Reads {"endpoint_url", "credentials": {"access_key_id", "secret_access_key"}} (the root's key)
and prints one JSON object: {"pages", "names", "version", "default_version", "local_policies",
"caller_arn", "missing_role_error"}. It pages through 25 users of path /paged/, gives a
customer managed policy a second version, lets user `flow` assume role `flow-role`, and asks the
role session who it is.
"""

import json
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

# One attempt: iamd is immediately consistent, so a retry could only hide a failure.
CONFIG = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})


def document(*actions):
    statement = {"Effect": "Allow", "Action": list(actions), "Resource": "arn:aws:s3:::reports/*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def page_through_users(iam):
    for n in range(25):
        iam.create_user(UserName=f"page-user-{n:02}", Path="/paged/")
    paginator = iam.get_paginator("list_users")
    pages = list(paginator.paginate(PathPrefix="/paged/", PaginationConfig={"PageSize": 10}))
    names = [user["UserName"] for page in pages for user in page["Users"]]
    return len(pages), names


def second_policy_version(iam):
    policy = iam.create_policy(PolicyName="boto-read", PolicyDocument=document("s3:GetObject"))
    arn = policy["Policy"]["Arn"]
    version = iam.create_policy_version(
        PolicyArn=arn,
        PolicyDocument=document("s3:GetObject", "s3:GetObjectVersion"),
        SetAsDefault=True,
    )["PolicyVersion"]["VersionId"]
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    local = [
        policy["PolicyName"]
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for policy in page["Policies"]
    ]
    return arn, version, default, local


def role_session_arn(iam, endpoint_url, policy_arn):
    """Creates user `flow` and a role trusting it, and returns the ARN the role's session has."""
    user_arn = iam.create_user(UserName="flow")["User"]["Arn"]
    key = iam.create_access_key(UserName="flow")["AccessKey"]
    statement = {"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}
    trust = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    role_arn = iam.create_role(RoleName="flow-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.attach_role_policy(RoleName="flow-role", PolicyArn=policy_arn)

    flow = boto3.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )
    sts = flow.client("sts", endpoint_url=endpoint_url, region_name="us-east-1", config=CONFIG)
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="boto")["Credentials"]
    session = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    sts = session.client("sts", endpoint_url=endpoint_url, region_name="us-east-1", config=CONFIG)
    return sts.get_caller_identity()["Arn"]


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def main():
    spec = json.load(sys.stdin)
    endpoint_url, root = spec["endpoint_url"], spec["credentials"]
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=root["access_key_id"],
        aws_secret_access_key=root["secret_access_key"],
        config=CONFIG,
    )
    pages, names = page_through_users(iam)
    policy_arn, version, default_version, local_policies = second_policy_version(iam)
    result = {
        "pages": pages,
        "names": names,
        "version": version,
        "default_version": default_version,
        "local_policies": local_policies,
        "caller_arn": role_session_arn(iam, endpoint_url, policy_arn),
        "missing_role_error": error_code(lambda: iam.get_role(RoleName="missing")),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
