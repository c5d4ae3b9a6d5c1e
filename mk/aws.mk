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

AWS_TEMPLATES := template.yaml copilot/api/addons/storage-access.yml

.PHONY: tools lint-template sam-build deploy deploy-prod

tools: $(TOOLS_STAMP) ## install SAM CLI + cfn-lint (pinned) into .tools/

$(TOOLS_STAMP):
	$(TOOLS_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check \
		aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION)
	touch $@

lint-template: $(TOOLS_STAMP) ## cfn-lint + sam validate --lint the SAM template and the Copilot addon
	$(LINT_ENV) $(CFN_LINT) $(AWS_TEMPLATES)
	$(LINT_ENV) $(SAM) validate --lint --template-file template.yaml

sam-build: $(TOOLS_STAMP) ## sam build: the convert function and the FFmpeg layer into .aws-sam/
	$(SAM_BUILD_ENV) $(SAM) build --template-file template.yaml

deploy: sam-build ## sam deploy (default config: shows and confirms the change set)
	@echo "First deployment to this account? Run: $(SAM) deploy --guided"
	$(SAM_CLI_ENV) $(SAM) deploy

deploy-prod: sam-build ## sam deploy --config-env prod, no confirmation (what CI runs)
	$(SAM_CLI_ENV) $(SAM) deploy --config-env prod --no-confirm-changeset --no-fail-on-empty-changeset
