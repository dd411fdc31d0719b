#!/usr/bin/env bash
# floor.sh: the least work any poller must do to read what s3mond reads.
# One token, then for each first-page URL in URLFILE (one per line, as s3mond
# requested them), curl fetches the page with the bearer token and the same
# Prefer header and follows @odata.nextLink until the last page. No parsing
# beyond finding the nextLink (grep on the tail of the body, where the service
# puts it), no processing of the rows: this is the cost of the pages alone.
#
#   floor.sh TOKEN_URL CLIENT_ID SECRET_FILE SCOPE URLFILE
#
# A line of URLFILE may start with "annotations " (the tracelogs query, which
# asks for the lookup's logical name like s3mond does). Prints "N pages".
set -euo pipefail

token_url=$1 client_id=$2 secret_file=$3 scope=$4 urlfile=$5
page=$(mktemp)
trap 'rm -f "$page"' EXIT

token=$(tr -d '\r\n' <"$secret_file" | curl -sS --fail -d grant_type=client_credentials -d client_id="$client_id" \
	--data-urlencode client_secret@- --data-urlencode scope="$scope" "$token_url" |
	sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "floor.sh: no token" >&2; exit 1; }

pages=0
while read -r first rest; do
	prefer='odata.maxpagesize=5000'
	url=$first
	if [ "$first" = annotations ]; then
		prefer='odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname",odata.maxpagesize=5000'
		url=$rest
	fi
	while [ -n "$url" ]; do
		curl -sS --fail -o "$page" \
			-H "Authorization: Bearer $token" -H 'Accept: application/json' \
			-H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0' -H "Prefer: $prefer" "$url"
		pages=$((pages + 1))
		url=$(tail -c 2048 "$page" | grep -o '"@odata.nextLink":"[^"]*"' |
			sed 's/^"@odata.nextLink":"//; s/"$//' || true)
	done
done <"$urlfile"
echo "$pages pages"
