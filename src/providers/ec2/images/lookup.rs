//! `image: { lookup: { owners, name, ... } }`: the image DescribeImages finds in the cell's region,
//! the way Terraform's `aws_ami` does: owners and a name pattern (and an architecture), available
//! images only, deprecated ones left out unless asked, the newest of several when `most_recent`.

use aws_sdk_ec2::types::Filter;

use super::Unresolved;
use crate::providers::ec2::api::{Api, ApiError, Retry};
use crate::spec::ImageLookup;

/// What a lookup found: an image id, or why not; and the calls made (every page counted).
pub async fn resolve(api: &Api, lookup: &ImageLookup) -> Result<(Result<String, Unresolved>, usize), ApiError> {
    let mut filters = vec![
        Filter::builder().name("name").values(&lookup.name).build(),
        Filter::builder().name("state").values("available").build(),
    ];
    if let Some(arch) = &lookup.architecture {
        filters.push(Filter::builder().name("architecture").values(arch).build());
    }
    let (mut found, mut calls, mut token) = (Vec::new(), 0, None::<String>);
    loop {
        let (page, attempts) = api
            .call_retrying(&api.buckets.describe, "DescribeImages", Retry::default(), || {
                api.client
                    .describe_images()
                    .set_owners(Some(lookup.owners.clone()))
                    .set_filters(Some(filters.clone()))
                    .include_deprecated(lookup.include_deprecated)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
        calls += attempts as usize;
        found.extend(
            page.images().iter().filter_map(|i| Some((i.creation_date()?.to_string(), i.image_id()?.to_string()))),
        );
        token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    // ISO 8601 dates in one format sort as text.
    found.sort();
    let (name, region) = (lookup.name.clone(), api.region.clone());
    let chosen = match (found.pop(), found.len(), lookup.most_recent) {
        (None, _, _) => Err(Unresolved::NoMatch { name, owners: lookup.owners.join(", "), region }),
        (Some((_, id)), 0, _) | (Some((_, id)), _, true) => Ok(id),
        (Some(_), others, false) => Err(Unresolved::Ambiguous { count: others + 1, name, region }),
    };
    Ok((chosen, calls))
}
