# AWS tooling (included by the top-level Makefile): SAM CLI and cfn-lint in their own virtualenv.
#
# aws-sam-cli pins boto3/botocore exactly, so it never goes into the project venv (.venv): it lives in
# .tools/, installed once (the stamp file names the pinned versions; bump them to reinstall).

TOOLS ?= .tools
TOOLS_PYTHON ?= python3
SAM_CLI_VERSION := 1.170.0
CFN_LINT_VERSION := 1.58.0
SAM := $(TOOLS)/bin/sam
CFN_LINT := $(TOOLS)/bin/cfn-lint
TOOLS_STAMP := $(TOOLS)/.installed-sam-$(SAM_CLI_VERSION)-cfn-lint-$(CFN_LINT_VERSION)

# Validating and linting work offline but need a region; no credentials are needed.
AWS_LINT_REGION ?= $(or $(AWS_DEFAULT_REGION),$(AWS_REGION),us-east-1)
SAM_CLI_ENV := SAM_CLI_TELEMETRY=0
LINT_ENV := $(SAM_CLI_ENV) AWS_DEFAULT_REGION=$(AWS_LINT_REGION)

# `sam build` without Docker wants a Python of the function's runtime (python3.13) on PATH. Where
# pyenv manages the Pythons, make every installed 3.11-3.13 visible (e.g. 3.11.7:3.12.1:3.13.0).
# In GitHub Actions, actions/setup-python puts python3.13 on PATH instead.
SAM_PYENV_VERSION ?= $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null \
	| grep -E '^3\.1[1-3]\.[0-9]+$$' | paste -sd: -)
SAM_BUILD_ENV := $(LINT_ENV) $(if $(SAM_PYENV_VERSION),PYENV_VERSION=$(SAM_PYENV_VERSION))

# Every CloudFormation template: the SAM stack, the Express Mode api stack, the deploy role, the Copilot
# addon.
AWS_TEMPLATES := template.yaml deploy/api-express.yaml deploy/github-deploy-role.yaml \
	copilot/api/addons/storage-access.yml

.PHONY: tools lint-template sam-build aws-check deploy deploy-prod

tools: $(TOOLS_STAMP) ## install SAM CLI + cfn-lint (pinned) into .tools/

$(TOOLS_STAMP):
	$(TOOLS_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check \
		aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION)
	touch $@

lint-template: $(TOOLS_STAMP) ## cfn-lint every template + sam validate --lint the SAM template
	$(LINT_ENV) $(CFN_LINT) $(AWS_TEMPLATES)
	$(LINT_ENV) $(SAM) validate --lint --template-file template.yaml

sam-build: $(TOOLS_STAMP) ## sam build: the convert function and the FFmpeg layer into .aws-sam/
	$(SAM_BUILD_ENV) $(SAM) build --template-file template.yaml

# The offline dress rehearsal: every template linted, the SAM template validated and built, and the
# template tests, which also check each boto3 call the code makes against the role that runs it, and
# every action CloudFormation's handlers call against the deploy role.
# `make test` runs those tests too (it runs all of tests/): a caller that has just run it, as .ci/run
# does, says so with AWS_CHECK_TESTS_RAN=1, and they are not run a second time.
AWS_CHECK_TESTS := tests/aws/test_template.py tests/aws/test_deploy_stacks.py tests/aws/test_deploy_permissions.py \
	tests/aws/test_iam_calls.py

aws-check: lint-template sam-build install-dev ## cfn-lint, sam validate --lint, sam build, IAM-vs-code tests
ifeq ($(AWS_CHECK_TESTS_RAN),1)
	@echo "aws-check: $(AWS_CHECK_TESTS) already ran (AWS_CHECK_TESTS_RAN=1)"
else
	$(BIN)/pytest -p no:cacheprovider -q $(AWS_CHECK_TESTS)
endif

deploy: sam-build ## sam deploy (default config: shows and confirms the change set)
	@echo "First deployment to this account? Run: $(SAM) deploy --guided"
	$(SAM_CLI_ENV) $(SAM) deploy

# prod's AllowedOrigin is the service's https:// URL (the template refuses "*" in prod), known only once
# the api is deployed, so it is given here: make deploy-prod ALLOWED_ORIGIN=https://... A command-line
# --parameter-overrides replaces samconfig.toml's list, so that list is read and passed along with it.
# ALARM_EMAIL (CI: the repository variable ALARM_EMAIL) subscribes an address to the alarms;
# WEBHOOK_SECRET_PARAMETER (CI: the variable of that name) names the SSM SecureString of the webhook
# key. Both may be empty (no e-mail; webhooks off): quoted, so SAM receives Key="" rather than Key=.
# MONTHLY_BUDGET (CI: the variable of that name; 0 or empty: none) is the optional AWS Budgets alarm, in US
# dollars a month (README, Security).
ALARM_EMAIL ?=
WEBHOOK_SECRET_PARAMETER ?=
MONTHLY_BUDGET ?= 0
PROD_OVERRIDES = $(shell $(TOOLS_PYTHON) -c 'import tomllib; \
	print(" ".join(tomllib.load(open("samconfig.toml", "rb"))["prod"]["deploy"]["parameters"]["parameter_overrides"]))')

deploy-prod: sam-build ## sam deploy --config-env prod ALLOWED_ORIGIN=https://<the api's URL> (what CI runs)
	@case "$(ALLOWED_ORIGIN)" in https://*) ;; *) echo "Set ALLOWED_ORIGIN to the api's https:// URL."; exit 2;; esac
	$(SAM_CLI_ENV) $(SAM) deploy --config-env prod --no-confirm-changeset --no-fail-on-empty-changeset \
		--parameter-overrides $(PROD_OVERRIDES) AllowedOrigin=$(ALLOWED_ORIGIN) \
		'AlarmEmail="$(ALARM_EMAIL)"' 'WebhookSecretParameter="$(WEBHOOK_SECRET_PARAMETER)"' \
		MonthlyBudget=$(or $(MONTHLY_BUDGET),0)
